"""A replay of stored bars at a chosen pace: paper trading on history, as if the bars were live.

The feed only decides *when* each step is handed over; the steps themselves are those of
`n1v1.engine.feeds.ReplayFeed` (the union of the symbols' timestamps, in order), so a paper session
and a backtest on the same bars see the same market.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pandas as pd

from n1v1.domain import Bar
from n1v1.engine.feeds import ReplayFeed

Step = tuple[pd.Timestamp, dict[str, Bar]]


class PacedReplay:
    """Hands out one step every 1 / bars_per_second seconds (0: as fast as they are asked for)."""

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        bars_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bars_per_second < 0:
            raise ValueError(f"bars_per_second must be >= 0, got {bars_per_second}")
        self._feed = ReplayFeed(frames)
        self.symbols = [str(s) for s in self._feed.frames]
        self.interval = 1.0 / bars_per_second if bars_per_second > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._steps = iter(())  # set by resume_after
        self._pending: Step | None = None
        self._due = 0.0
        self.exhausted = False
        self.resume_after(None)

    def __len__(self) -> int:
        return len(self._feed)

    def resume_after(self, last: pd.Timestamp | None) -> None:
        """Continue with the first step strictly after `last` (None: from the beginning)."""
        steps = (
            (ts, {str(s): bar for s, (_, bar) in bars.items()})
            for ts, bars in self._feed
            if last is None or ts > last
        )
        self._steps = iter(steps)
        self._pending = None
        self.exhausted = False
        self._due = self._clock()

    def next_step(self, timeout: float) -> Step | None:
        """The next step once it is due (waiting at most `timeout` s), else None."""
        if self.exhausted:
            return None
        if self._pending is None:
            self._pending = next(self._steps, None)
            if self._pending is None:
                self.exhausted = True
                return None
        wait = self._due - self._clock()
        if wait > 0:
            self._sleep(min(wait, timeout))
            if self._due - self._clock() > 0:
                return None
        step, self._pending = self._pending, None
        self._due = max(self._due + self.interval, self._clock() - self.interval)
        return step
