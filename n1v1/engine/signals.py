"""Where the engine reads strategy targets.

Strategies are causal functions from bars to target positions (tested by truncation), so in a replay
the targets of a whole series can be computed once up front and read bar by bar without any
lookahead: the value at bar t is exactly what the strategy would have said with only bars 0..t in
hand. A live source recomputes on a trailing window as each bar arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from n1v1.strategies.base import Strategy


class SignalSource(Protocol):
    name: str

    def target(self, symbol: str, index: int) -> int:
        """Target position (-1, 0, +1) of `symbol` at the close of its bar number `index`."""


class StatefulSource(SignalSource, Protocol):
    """A live source that remembers more than the bars show (say, the model version it uses).

    A session snapshot (n1v1/live/snapshot.py) keeps `snapshot_state()` per source, as plain JSON
    data, and hands it back to the same source by name through `restore_state` before the next
    bar; a source without these methods keeps nothing of its own. The state must be exactly what
    the source would hold had it seen every bar since the start, or a restored engine and a
    replayed one part ways.
    """

    def snapshot_state(self) -> dict[str, Any]: ...

    def restore_state(self, state: dict[str, Any]) -> None: ...


class PrecomputedTargets:
    def __init__(
        self,
        strategy: Strategy,
        frames: Mapping[str, pd.DataFrame],
        allow_short: bool,
        name: str | None = None,
    ) -> None:
        self.name = name or strategy.name
        self.targets: dict[str, np.ndarray] = {
            symbol: _checked(
                strategy.target_positions(frame, allow_short=allow_short), frame, symbol
            )
            for symbol, frame in frames.items()
        }

    @classmethod
    def from_arrays(cls, name: str, targets: Mapping[str, np.ndarray]) -> PrecomputedTargets:
        """Targets computed elsewhere (e.g. by a research script); used as given."""
        self = cls.__new__(cls)
        self.name = name
        self.targets = {s: np.asarray(t, dtype=np.int8) for s, t in targets.items()}
        return self

    def target(self, symbol: str, index: int) -> int:
        return int(self.targets[symbol][index])


def _checked(targets: np.ndarray, frame: pd.DataFrame, symbol: str) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.shape != (len(frame),):
        raise ValueError(
            f"{symbol}: strategy returned {targets.shape} targets for {len(frame)} bars"
        )
    if targets.size and not np.isin(targets, (-1, 0, 1)).all():
        raise ValueError(f"{symbol}: strategy targets must be -1, 0 or +1")
    return targets.astype(np.int8, copy=False)
