"""A replay of stored bars at a chosen pace: paper trading on history, as if the bars were live.

The feed only decides *when* each step is handed over; the steps themselves are those of
`n1v1.engine.feeds.ReplayFeed` (the union of the symbols' timestamps, in order), so a paper session
and a backtest on the same bars see the same market.

A replay ends. By default the feed is then exhausted and the session shows "replay finished". With
a `SyntheticContinuation` the feed goes on after the last recorded bar with seeded synthetic bars
(`n1v1.data.synthetic`), so a demo stays live until it is stopped; `describe()` says at every
moment which of the two the engine is trading on, and the dashboard shows it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from n1v1.data.synthetic import SyntheticModel, generate_bars
from n1v1.domain import Bar
from n1v1.engine.feeds import ReplayFeed

Step = tuple[pd.Timestamp, dict[str, Bar]]

# Bars per generated block of the continuation. Part of the definition of its bars (block k is
# generated with seed + k from the previous block's last closes): do not change lightly.
CONTINUATION_BLOCK = 4096
_MINUTES_PER_YEAR = 365.0 * 24 * 60


@dataclass(frozen=True, slots=True)
class SyntheticContinuation:
    """What follows the replay: synthetic bars from `seed`, one per `interval` for every symbol,
    starting at each symbol's last recorded close, with the replay's own realised volatility and
    median volume. Not market data, and labelled as such wherever it is shown."""

    seed: int = 0


class PacedReplay:
    """Hands out one step every 1 / bars_per_second seconds (0: as fast as they are asked for)."""

    def __init__(
        self,
        frames: Mapping[str, pd.DataFrame],
        bars_per_second: float,
        *,
        continuation: SyntheticContinuation | None = None,
        label: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bars_per_second < 0:
            raise ValueError(f"bars_per_second must be >= 0, got {bars_per_second}")
        self._feed = ReplayFeed(frames)
        self.symbols = [str(s) for s in self._feed.frames]
        self.bars_per_second = bars_per_second
        self.interval = 1.0 / bars_per_second if bars_per_second > 0 else 0.0
        self.continuation = continuation
        self.label = label or f"a replay of {', '.join(self.symbols)}"
        self.replay_start, self.replay_end = self._feed.timeline[0], self._feed.timeline[-1]
        self._synthetic = (
            None if continuation is None else _Continuation(self._feed, continuation.seed)
        )
        self._clock, self._sleep = clock, sleep
        self._steps: Iterator[Step] = iter(())  # set by resume_after
        self._pending: Step | None = None
        self._due = 0.0
        self.exhausted = False
        self.last_handed: pd.Timestamp | None = None
        self.resume_after(None)

    def __len__(self) -> int:
        """Recorded steps (a continuation has no end)."""
        return len(self._feed)

    @property
    def replay_finished(self) -> bool:
        """Every recorded step has been handed out (the continuation, if any, has begun)."""
        return self.last_handed is not None and self.last_handed >= self.replay_end

    @property
    def phase(self) -> str:
        """`replay` (recorded bars), `synthetic` (the continuation) or `finished`."""
        if not self.replay_finished:
            return "replay"
        return "finished" if self._synthetic is None else "synthetic"

    def describe(self) -> dict[str, Any]:
        """What this feed is, for the status and the dashboard."""
        return {
            "kind": "replay",
            "label": self.label,
            "phase": self.phase,
            "symbols": list(self.symbols),
            "replay_start": self.replay_start.isoformat(),
            "replay_end": self.replay_end.isoformat(),
            "replay_steps": len(self),
            "bars_per_second": self.bars_per_second,
            "after_replay": "stop" if self._synthetic is None else "synthetic",
            "synthetic": None
            if self._synthetic is None
            else {
                "seed": self._synthetic.seed,
                "annual_vol": self._synthetic.annual_vol,
                "interval": str(self._synthetic.interval),
                "note": "synthetic bars (a seeded random walk from the replay's last closes), "
                "not market data",
            },
        }

    def resume_after(self, last: pd.Timestamp | None) -> None:
        """Continue with the first step strictly after `last` (None: from the beginning)."""
        recorded = (
            (ts, {str(s): bar for s, (_, bar) in bars.items()})
            for ts, bars in self._feed.steps_after(last)
        )
        steps: Iterator[Step] = iter(recorded)
        if self._synthetic is not None:
            steps = _chain(steps, self._synthetic.steps_after(last))
        self._steps = steps
        self._pending = None
        self.exhausted = False
        self.last_handed = last
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
        self.last_handed = step[0]
        return step


def _chain(first: Iterator[Step], second: Iterator[Step]) -> Iterator[Step]:
    yield from first
    yield from second


class _Continuation:
    """The synthetic bars after a replay, a pure function of the replay and the seed, so a
    restarted feed (`steps_after`) hands out exactly the bars the first one would have."""

    def __init__(self, feed: ReplayFeed, seed: int) -> None:
        self.seed = seed
        timeline = feed.timeline
        # the usual spacing of the recorded bars (their timeframe), not a gap between sessions
        gaps = timeline[1:] - timeline[:-1]
        self.interval = pd.Timedelta(gaps.median()) if len(gaps) else pd.Timedelta("1min")
        self.start = timeline[-1]
        self.symbols = [str(s) for s in feed.frames]
        self.last_close, self.volume, vols = {}, {}, []
        for symbol, frame in feed.frames.items():
            close = frame["close"].to_numpy(dtype=np.float64)
            self.last_close[str(symbol)] = float(close[-1])
            self.volume[str(symbol)] = float(np.median(frame["volume"].to_numpy()))
            returns = np.diff(np.log(close))
            if len(returns) > 1:
                vols.append(float(np.std(returns, ddof=1)))
        per_bar = float(np.median(vols)) if vols else 0.001
        bars_a_year = _MINUTES_PER_YEAR / (self.interval / pd.Timedelta("1min"))
        annual = per_bar * math.sqrt(bars_a_year)
        self.annual_vol = round(min(max(annual, 0.05), 3.0), 4) if math.isfinite(annual) else 0.6
        self.model = SyntheticModel(start_price=1.0, annual_vol=self.annual_vol)

    def steps_after(self, last: pd.Timestamp | None) -> Iterator[Step]:
        """Every synthetic step strictly after `last` (all of them when `last` is before the
        continuation), in order, without end."""
        skip = 0
        if last is not None and last > self.start:
            skip = int((last - self.start) // self.interval)
        closes = dict(self.last_close)
        block = 0
        while True:
            frames = self._block(block, closes)
            first = block * CONTINUATION_BLOCK
            for i in range(max(0, skip - first), CONTINUATION_BLOCK):
                ts = self.start + (first + i + 1) * self.interval
                yield ts, {s: _bar(ts, frames[s], i) for s in self.symbols}
            closes = {s: float(frames[s][3][-1]) for s in self.symbols}
            block += 1

    def _block(self, block: int, closes: Mapping[str, float]) -> dict[str, tuple[np.ndarray, ...]]:
        """Block `block`: bars relative to 1.0, scaled to each symbol's last close and volume."""
        names = [f"SYN{j}" for j in range(len(self.symbols))]
        first_open = self.start + (block * CONTINUATION_BLOCK + 1) * self.interval
        made = generate_bars(
            CONTINUATION_BLOCK, names, self.interval, first_open, self.seed + block, self.model
        )
        frames = made if isinstance(made, dict) else {names[0]: made}
        out = {}
        for name, symbol in zip(names, self.symbols, strict=True):
            f = frames[name]
            scale, volume = closes[symbol], self.volume[symbol] / self.model.base_volume
            out[symbol] = (
                f["open"].to_numpy() * scale,
                f["high"].to_numpy() * scale,
                f["low"].to_numpy() * scale,
                f["close"].to_numpy() * scale,
                f["volume"].to_numpy() * volume,
            )
        return out


def _bar(ts: pd.Timestamp, columns: tuple[np.ndarray, ...], i: int) -> Bar:
    o, h, low, c, v = columns
    return Bar(ts, float(o[i]), float(h[i]), float(low[i]), float(c[i]), float(v[i]))


def bundled_replay(
    datasets: list[str],
    bars_per_second: float,
    *,
    timeframe: str | None = None,
    start: str | None = None,
    end: str | None = None,
    continuation: SyntheticContinuation | None = None,
) -> PacedReplay:
    """A paced replay of bundled datasets (one symbol each), labelled with what it replays."""
    from n1v1.data.datasets import list_datasets
    from n1v1.data.market import load_market

    info = {d.name: d for d in list_datasets()}
    frames = {
        info[name].symbol: load_market(name, timeframe=timeframe, start=start, end=end)
        for name in datasets
    }
    venues = sorted({info[name].venue for name in datasets})
    bar = timeframe or "/".join(sorted({info[name].timeframe for name in datasets}))
    timeline = ReplayFeed(frames).timeline
    pace = "full speed" if bars_per_second == 0 else f"{bars_per_second:g} bars a second"
    label = (
        f"a replay of {' and '.join(v.title() for v in venues)} {bar} bars of "
        f"{', '.join(frames)} from {timeline[0]:%Y-%m-%d %H:%M} to {timeline[-1]:%Y-%m-%d %H:%M} "
        f"UTC, at {pace}"
    )
    return PacedReplay(frames, bars_per_second, continuation=continuation, label=label)
