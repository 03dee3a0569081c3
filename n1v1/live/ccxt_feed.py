"""Live bars from an exchange's public market data, polled through ccxt.

The feed turns "poll the exchange every few seconds" into the steps a trading session consumes:
`(bar time, {symbol: Bar})`, strictly increasing, never repeated, closed bars only. The rules, and
why:

- **Closed bars only.** A bar is closed when ``open time + timeframe <= clock()``. Exchanges return
  the still-forming bar with every kline request; handing it over would let a strategy act on a
  close that has not happened yet (lookahead), so it is dropped and fetched again once closed.
- **Catch-up by paging.** Each symbol keeps its own ``since`` (just after the last closed bar it
  has seen) and every poll pages through ``fetch_ohlcv(since, limit)`` until it reaches the forming
  bar, so a restart after a long outage replays every missed bar, however many pages that is.
  Both rules live in `n1v1.live.ohlcv.closed_pages`, shared with `n1v1 data download`.
- **Multi-symbol alignment.** The step for time T waits until every symbol has shown a closed bar
  at T or later (so a slow symbol is not left out of a step it has a bar for), or until a poll of
  each lagging symbol made at least ``settle_seconds`` after T's close found nothing at T: that
  symbol had no trade in the bar and sits the step out. (Requiring a *successful* poll after the
  settle time, not only the clock, keeps a symbol whose requests fail from being mistaken for one
  without trades.) A bar that still arrives for a time already handed over is dropped with a
  WARNING: steps are never repeated or reordered.
- **Errors.** ccxt's ``NetworkError`` and ``ExchangeError`` (HTTP 5xx, timeouts, rate limits)
  and ``BadResponse`` (a body that is not JSON or not the API's shape; like ``NetworkError`` it is
  an ``OperationFailed``) are logged at WARNING and retried after a back-off of 2, 4, 8, ... times
  ``poll_seconds``, at most a minute; the call that hit them returns None. Bars that are well-formed
  but impossible (non-finite, high below low, ...) are a `DataError` (a ``ValueError``) naming the
  exchange, symbol and bar time: bad data stops the session rather than trade on it.

The feed uses no API keys. A poll in progress may outlast ``next_step``'s timeout by up to the
exchange object's HTTP timeout (ccxt's ``exchange.timeout``, 10 s by default).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import ccxt
import pandas as pd

from n1v1.data.resample import parse_timeframe
from n1v1.domain import Bar
from n1v1.live.exchange import check_exchange_id, check_symbols, make_exchange
from n1v1.live.ohlcv import MS, closed_pages, enable_json_check, page_limit, rows_frame

log = logging.getLogger(__name__)

Step = tuple[pd.Timestamp, dict[str, Bar]]

MAX_BACKOFF_SECONDS = 60.0
# Within one next_step call, never poll more often than this, even with poll_seconds=0.
MIN_POLL_GAP_SECONDS = 0.05


def utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


class CcxtBarFeed:
    """Closed OHLCV bars of several symbols from an exchange's public API, polled.

    ``resume_after(last)`` says where the steps start: strictly after ``last``, catching up on every
    bar closed since; ``None`` (also what the constructor does) starts with the most recent
    ``history_bars`` closed bars, so strategies can warm up, then goes on live. With
    ``history_bars=0`` the first step is the bar forming now, once it closes.
    """

    def __init__(
        self,
        exchange_id: str,
        symbols: list[str],
        timeframe: str,
        *,
        poll_seconds: float = 5.0,
        exchange: ccxt.Exchange | None = None,
        clock: Callable[[], pd.Timestamp] | None = None,
        history_bars: int = 500,
        settle_seconds: float = 2.0,
    ) -> None:
        check_exchange_id(exchange_id)
        if not symbols:
            raise ValueError("symbols: at least one symbol is needed")
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        if repeated:
            raise ValueError(f"symbols: {repeated[0]!r} is listed more than once")
        for name, value in (("poll_seconds", poll_seconds), ("settle_seconds", settle_seconds)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if history_bars < 0:
            raise ValueError(f"history_bars must be >= 0, got {history_bars}")
        self._timeframe_delta = parse_timeframe(timeframe)  # DataError names a bad timeframe
        if exchange is None:
            exchange = make_exchange(exchange_id)
        if exchange.id != exchange_id:
            raise ValueError(
                f"exchange: the object passed is ccxt's {exchange.id!r}, not {exchange_id!r}"
            )
        if not exchange.has.get("fetchOHLCV"):
            raise ValueError(f"exchange {exchange_id!r}: ccxt cannot fetch OHLCV bars from it")
        if exchange.timeframes and timeframe not in exchange.timeframes:
            raise ValueError(
                f"timeframe {timeframe!r}: {exchange_id} offers {', '.join(exchange.timeframes)}"
            )

        self.exchange_id = exchange_id
        self.symbols = list(symbols)
        self.timeframe = timeframe
        self.exhausted = False  # a live feed never runs out
        self.poll_seconds = float(poll_seconds)
        self.settle = pd.Timedelta(seconds=settle_seconds)
        self.history_bars = history_bars
        self._exchange = exchange
        enable_json_check(exchange)
        self._clock = clock or utc_now
        self._page_limit = page_limit(exchange)
        self._tf_ms = int(self._timeframe_delta.value // MS)
        self._markets_checked = False
        self._failures = 0
        self._next_poll = -math.inf
        self._cursor = pd.Timestamp(0, tz="UTC")  # set by resume_after
        self._since_ms: dict[str, int] = {}
        self._latest: dict[str, pd.Timestamp | None] = {}
        self._checked_at: dict[str, pd.Timestamp | None] = {}
        self._pending: dict[str, deque[Bar]] = {}
        self.resume_after(None)

    def resume_after(self, last: pd.Timestamp | None) -> None:
        """Next steps start strictly after ``last`` (a tz-aware time; the last step processed).

        ``None`` starts with the most recent ``history_bars`` bars closed by now (the first poll
        fetches them). Bars fetched but not yet handed over are discarded: they are fetched again.
        """
        if last is None:
            last = self._now() - self._timeframe_delta * (self.history_bars + 1)
        else:
            last = _as_utc(last, "resume_after(last)")
        self._cursor = last
        since = int(last.value // MS) + 1
        for symbol in self.symbols:
            self._since_ms[symbol] = since
            self._latest[symbol] = None
            self._checked_at[symbol] = None
            self._pending[symbol] = deque()
        self._failures = 0
        self._next_poll = -math.inf

    def next_step(self, timeout: float) -> Step | None:
        """Block up to ``timeout`` s; the next closed step in time order, or None if none is due.

        Polls the exchange when a poll is due (every ``poll_seconds``, or after an error's
        back-off), at least once per call if one is due even when ``timeout`` is 0.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            step = self._pop_ready()
            if step is not None:
                return step
            if time.monotonic() >= self._next_poll:
                if not self._poll():
                    return None
                step = self._pop_ready()
                if step is not None:
                    return step
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            wait = max(self._next_poll - time.monotonic(), MIN_POLL_GAP_SECONDS)
            time.sleep(min(remaining, wait))

    # -- polling -----------------------------------------------------------------------------
    def _poll(self) -> bool:
        """Fetch every symbol up to the forming bar; False (logged, backed off) on an error."""
        now = self._now()
        try:
            self._check_markets()
            for symbol in self.symbols:
                self._fetch_symbol(symbol, now)
        except (ccxt.OperationFailed, ccxt.ExchangeError) as exc:
            self._failures += 1
            delay = min(
                self.poll_seconds * 2**self._failures, max(MAX_BACKOFF_SECONDS, self.poll_seconds)
            )
            self._next_poll = time.monotonic() + delay
            log.warning(
                "%s market data poll failed (%s: %s); attempt %d, retrying in %.1f s",
                self.exchange_id,
                type(exc).__name__,
                str(exc)[:300],
                self._failures,
                delay,
            )
            return False
        self._failures = 0
        self._next_poll = time.monotonic() + self.poll_seconds
        return True

    def _check_markets(self) -> None:
        """Load the markets once and reject symbols the exchange does not list (a config error)."""
        if self._markets_checked:
            return
        check_symbols(self._exchange, self.symbols)
        self._markets_checked = True

    def _fetch_symbol(self, symbol: str, now: pd.Timestamp) -> None:
        """Page from the symbol's ``since`` until the next bar would still be forming at ``now``."""
        for closed in closed_pages(
            self._exchange,
            symbol,
            self.timeframe,
            since_ms=self._since_ms[symbol],
            now_ms=int(now.value // MS),
            tf_ms=self._tf_ms,
            limit=self._page_limit,
        ):
            self._accept(symbol, self._to_bars(symbol, closed))
            self._since_ms[symbol] = int(closed[-1][0]) + 1
        self._checked_at[symbol] = now

    def _to_bars(self, symbol: str, rows: list[list[Any]]) -> list[Bar]:
        frame = rows_frame(self.exchange_id, symbol, rows)
        return [
            Bar(ts, float(o), float(h), float(lo), float(c), float(v))
            for ts, o, h, lo, c, v in zip(
                frame.index,
                frame["open"].to_numpy(),
                frame["high"].to_numpy(),
                frame["low"].to_numpy(),
                frame["close"].to_numpy(),
                frame["volume"].to_numpy(),
                strict=True,
            )
        ]

    def _accept(self, symbol: str, bars: list[Bar]) -> None:
        queue = self._pending[symbol]
        for bar in bars:
            if bar.timestamp <= self._cursor:
                log.warning(
                    "%s %s bar at %s arrived after that step was handed over (after "
                    "settle_seconds=%s); dropped",
                    self.exchange_id,
                    symbol,
                    bar.timestamp.isoformat(),
                    self.settle.total_seconds(),
                )
            elif not queue or bar.timestamp > queue[-1].timestamp:
                queue.append(bar)
        latest = self._latest[symbol]
        if latest is None or bars[-1].timestamp > latest:
            self._latest[symbol] = bars[-1].timestamp

    # -- alignment ---------------------------------------------------------------------------
    def _pop_ready(self) -> Step | None:
        heads = [q[0].timestamp for q in self._pending.values() if q]
        if not heads:
            return None
        at = min(heads)
        settled = at + self._timeframe_delta + self.settle
        for symbol in self.symbols:
            latest, checked = self._latest[symbol], self._checked_at[symbol]
            seen = latest is not None and latest >= at
            sits_out = checked is not None and checked >= settled
            if not (seen or sits_out):
                return None
        bars = {
            s: self._pending[s].popleft()
            for s in self.symbols
            if self._pending[s] and self._pending[s][0].timestamp == at
        }
        self._cursor = at
        return at, bars

    def _now(self) -> pd.Timestamp:
        return _as_utc(self._clock(), "clock()")


def _as_utc(ts: pd.Timestamp, what: str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    if ts.tzinfo is None:
        raise ValueError(f"{what}: {ts} has no time zone; give a tz-aware (UTC) time")
    return ts.tz_convert("UTC")
