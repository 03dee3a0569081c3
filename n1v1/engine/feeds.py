"""Market data feeds: what drives the engine's clock.

`ReplayFeed` walks the union of the symbols' timestamps in order, handing the engine each symbol's
bar at that instant (a symbol without a bar at a timestamp simply sits that step out). A live feed
yields the same `(timestamp, {symbol: (index, bar)})` steps as bars close.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from n1v1.domain import Bar, Symbol

Step = tuple[pd.Timestamp, dict[Symbol, tuple[int, Bar]]]


class ReplayFeed:
    def __init__(self, frames: Mapping[str, pd.DataFrame]) -> None:
        if not frames:
            raise ValueError("ReplayFeed needs at least one symbol's bars")
        self.frames = {Symbol(s): f for s, f in frames.items()}
        self._columns = {
            s: tuple(
                f[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")
            )
            for s, f in self.frames.items()
        }
        self.timeline = _union_index(list(self.frames.values()))

    def __len__(self) -> int:
        return len(self.timeline)

    def __iter__(self) -> Iterator[Step]:
        return self.steps_after(None)

    def steps_after(self, last: pd.Timestamp | None) -> Iterator[Step]:
        """The steps strictly after `last` (None: every step). The ones before are skipped by a
        binary search, not built: a restarted paper session resumes a long replay at once."""
        start = 0 if last is None else int(self.timeline.searchsorted(last, side="right"))
        timeline = self.timeline[start:]
        positions = {s: f.index.get_indexer(timeline) for s, f in self.frames.items()}
        for step in range(len(timeline)):
            ts = timeline[step]
            bars: dict[Symbol, tuple[int, Bar]] = {}
            for symbol, where in positions.items():
                i = int(where[step])
                if i >= 0:
                    o, h, low, c, v = self._columns[symbol]
                    bars[symbol] = (
                        i,
                        Bar(ts, float(o[i]), float(h[i]), float(low[i]), float(c[i]), float(v[i])),
                    )
            yield ts, bars


def _union_index(frames: list[pd.DataFrame]) -> pd.DatetimeIndex:
    index = frames[0].index
    for frame in frames[1:]:
        index = index.union(frame.index)
    return pd.DatetimeIndex(index)
