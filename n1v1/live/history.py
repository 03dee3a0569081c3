"""Bars as they arrive, and strategy targets recomputed on a trailing window of them.

A backtest computes a strategy's targets over the whole series at once (`PrecomputedTargets`);
live there is no whole series, so each new bar re-runs the strategy on the last `window` bars and
takes the final value. Strategies are causal (tested by truncation), so that value uses bars up
to and including the new one and nothing later. Recursive indicators (EMA, RSI) started at the
window's first bar differ slightly from a full-history run; the window is therefore several times
the longest warm-up. The result is a pure function of the bars seen, so a restarted engine that
replays the same bars reaches the same targets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from n1v1 import indicators
from n1v1.domain import Bar
from n1v1.strategies.base import BAR_COLUMNS, Strategy, attach_columns

_INITIAL_CAPACITY = 1024
# Built once: a list of labels would be re-inferred into an Arrow string index on every bar.
_COLUMNS = pd.Index(BAR_COLUMNS)


# (symbol, time of the first bar held, how many) -> the bars just before it, oldest first
OlderBars = Callable[[str, pd.Timestamp, int], list[Bar]]


class BarHistory:
    """Append-only OHLCV arrays per symbol (amortised O(1) append) with a cached trailing frame.

    Bar times are kept as int64 nanoseconds: building the trailing frame's index from them is
    several times cheaper than from Timestamp objects, and the frame is built on every bar.

    A history restored from a snapshot (`restore`) holds only the last `window` bars of each
    symbol, from bar number `first`; bar numbers go on from the snapshot's counts. If a strategy
    joins later and needs a wider window, `widen` fetches the missing older bars through
    `older_bars` (the session reads them from the store's bar log), so every frame is the one a
    history that kept every bar would show.
    """

    def __init__(self, window: int) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 bars, got {window}")
        self.window = window
        self.older_bars: OlderBars | None = None
        self._data: dict[str, np.ndarray] = {}  # symbol -> (capacity, 5) float64
        self._times: dict[str, np.ndarray] = {}  # symbol -> (capacity,) int64 ns, UTC
        self._counts: dict[str, int] = {}
        self._first: dict[str, int] = {}  # bar number of row 0 (0 unless restored)
        self._frames: dict[str, tuple[int, pd.DataFrame]] = {}

    def append(self, symbol: str, bar: Bar) -> int:
        """Store the bar; returns its index within the symbol's series (0 for the first)."""
        n = self._counts.get(symbol, 0)
        held = n - self._first.get(symbol, 0)
        stamp = pd.Timestamp(bar.timestamp)
        if stamp.tzinfo is None:
            raise ValueError(f"{symbol}: bar at {stamp} has no time zone; bars are UTC")
        ns = stamp.tz_convert("UTC").value
        data, times = self._data.get(symbol), self._times.get(symbol)
        if held and ns <= times[held - 1]:  # type: ignore[index]
            previous = pd.Timestamp(int(times[held - 1]), tz="UTC")  # type: ignore[index]
            raise ValueError(
                f"{symbol}: bar at {stamp} is not after the previous one at {previous}"
            )
        if data is None or times is None or held == data.shape[0]:
            data, times = self._grow(symbol, held, max(_INITIAL_CAPACITY, 2 * held))
        data[held] = (bar.open, bar.high, bar.low, bar.close, bar.volume)
        times[held] = ns
        self._counts[symbol] = n + 1
        return n

    def _grow(self, symbol: str, held: int, capacity: int) -> tuple[np.ndarray, np.ndarray]:
        grown = np.empty((capacity, 5), dtype=np.float64)
        grown_times = np.empty(capacity, dtype=np.int64)
        data, times = self._data.get(symbol), self._times.get(symbol)
        if data is not None and times is not None:
            grown[:held], grown_times[:held] = data[:held], times[:held]
        self._data[symbol], self._times[symbol] = grown, grown_times
        return grown, grown_times

    def widen(self, window: int) -> None:
        """Show strategies at least `window` bars from now on (a strategy joined that needs more
        history); nothing is lost: a restored history first fetches the older bars it lacks."""
        if window > self.window:
            self.window = window
            self._frames.clear()
            for symbol in self._counts:
                self._fetch_older(symbol)

    def _fetch_older(self, symbol: str) -> None:
        first, n = self._first.get(symbol, 0), self._counts[symbol]
        missing = min(first, self.window - (n - first))
        if missing <= 0:
            return
        if self.older_bars is None:
            raise RuntimeError(f"{symbol}: bars before number {first} are not held")
        start = pd.Timestamp(int(self._times[symbol][0]), tz="UTC")
        older = self.older_bars(symbol, start, missing)
        if len(older) != missing:
            raise RuntimeError(
                f"{symbol}: {missing} bars before {start} needed, the bar log has {len(older)}"
            )
        held = n - first
        data = np.empty((max(_INITIAL_CAPACITY, 2 * (held + missing)), 5), dtype=np.float64)
        times = np.empty(data.shape[0], dtype=np.int64)
        data[:missing] = [(b.open, b.high, b.low, b.close, b.volume) for b in older]
        times[:missing] = [pd.Timestamp(b.timestamp).tz_convert("UTC").value for b in older]
        data[missing : missing + held] = self._data[symbol][:held]
        times[missing : missing + held] = self._times[symbol][:held]
        self._data[symbol], self._times[symbol] = data, times
        self._first[symbol] = first - missing

    # -- snapshots ---------------------------------------------------------------------------------
    def tail(self, symbol: str) -> tuple[int, np.ndarray, np.ndarray]:
        """(bar number of the first, times in ns, OHLCV rows) of the last `window` bars: all a
        snapshot keeps, since strategies see no more (`frame`)."""
        first, n = self._first.get(symbol, 0), self._counts[symbol]
        start = max(first, n - self.window)
        rows = slice(start - first, n - first)
        return start, self._times[symbol][rows].copy(), self._data[symbol][rows].copy()

    def restore(self, symbol: str, first: int, times: np.ndarray, rows: np.ndarray) -> None:
        """Hold `rows` (OHLCV, times in ns) as bars number `first` onwards."""
        held = len(times)
        capacity = max(_INITIAL_CAPACITY, 2 * held)
        data = np.empty((capacity, 5), dtype=np.float64)
        stamps = np.empty(capacity, dtype=np.int64)
        data[:held], stamps[:held] = rows, times
        self._data[symbol], self._times[symbol] = data, stamps
        self._counts[symbol] = first + held
        self._first[symbol] = first
        self._frames.pop(symbol, None)

    def symbols(self) -> list[str]:
        return list(self._counts)

    def count(self, symbol: str) -> int:
        return self._counts.get(symbol, 0)

    def frame(self, symbol: str) -> pd.DataFrame:
        """The last `window` bars of `symbol` as a bars DataFrame (cached until the next append)."""
        n = self.count(symbol)
        cached = self._frames.get(symbol)
        if cached is not None and cached[0] == n:
            return cached[1]
        first = self._first.get(symbol, 0)
        start = max(first, n - self.window) - first
        stamps = self._times[symbol][start : n - first].view("datetime64[ns]")
        index = pd.DatetimeIndex(stamps, name="timestamp").tz_localize("UTC")
        block = self._data[symbol][start : n - first]
        frame = pd.DataFrame(block, columns=_COLUMNS, index=index)
        attach_columns(frame, {name: block[:, i] for i, name in enumerate(BAR_COLUMNS)})
        self._frames[symbol] = (n, frame)
        return frame

    def atr(self, symbol: str, period: int) -> float:
        """ATR at the last bar over the trailing window (NaN until `period` bars are in)."""
        f = self.frame(symbol)
        values = indicators.atr(
            f["high"].to_numpy(), f["low"].to_numpy(), f["close"].to_numpy(), period
        )
        return float(values[-1]) if len(values) else float("nan")


class RollingTargets:
    """A SignalSource that asks the strategy about the newest bar only, on the trailing window."""

    def __init__(
        self, strategy: Strategy, history: BarHistory, allow_short: bool, name: str | None = None
    ) -> None:
        self.strategy = strategy
        self.history = history
        self.allow_short = allow_short
        self.name = name or strategy.name
        # The newest bar's answer per symbol: the account and the strategy's shadow account
        # (n1v1/engine/shadows.py) both ask, and the strategy should run once per bar.
        self._answered: dict[str, tuple[int, int]] = {}

    def snapshot_state(self) -> dict[str, object]:
        """Nothing of its own to keep: its answers follow from the bars (n1v1/engine/signals.py,
        `StatefulSource`)."""
        return {}

    def restore_state(self, state: dict[str, object]) -> None:
        if state:
            raise ValueError(f"{self.name}: a trailing-window source keeps no state, got {state}")

    def target(self, symbol: str, index: int) -> int:
        if index != self.history.count(symbol) - 1:
            raise ValueError(
                f"{self.name}: asked for {symbol} bar {index}, but only the newest bar "
                f"({self.history.count(symbol) - 1}) can be computed live"
            )
        answered = self._answered.get(symbol)
        if answered is not None and answered[0] == index:
            return answered[1]
        targets = self.strategy.target_positions(
            self.history.frame(symbol), allow_short=self.allow_short
        )
        value = int(targets[-1])
        if value not in (-1, 0, 1):
            raise ValueError(f"{self.name}: {symbol} target {value} is not -1, 0 or +1")
        self._answered[symbol] = (index, value)
        return value
