"""Historical closed bars from an exchange into a bars file: the work of `n1v1 data download`.

Bars are read through `n1v1.live.ohlcv.closed_pages`, the paging loop the live feed uses, so a
downloaded file holds exactly the closed bars the feed would have handed a session, and never the
forming one. On top of that loop this module adds what a long one-off download needs:

- **Settled bars only.** "Now" is taken `SETTLE` before the wall clock, so a bar that closed
  a moment ago (whose last trades an exchange may still be adding, or which a clock running fast
  would call closed early) is left for the next run rather than stored for good.
- **Resuming.** The file's last bar decides where fetching starts (just after it), so a re-run
  asks the exchange only for what is missing and stores nothing twice.
- **Retries, bounded.** What ccxt calls ``OperationFailed`` (network errors, rate limits: HTTP
  429, honouring ``Retry-After``; outages: 5xx; broken bodies) is retried after ``wait``,
  2 ``wait``, 4 ``wait``, ...
  (at most `MAX_WAIT_SECONDS`); after ``retries`` failures in a row the download stops with an
  error naming the exchange, the symbol and the time it was fetching from. Any other exchange
  error (a refused request) stops it at once.
- **Nothing lost.** Fetched pages are written (`n1v1.data.bar_file.BarFile`: atomic, validated)
  every `FLUSH_SECONDS` and whenever the download stops, error or Ctrl-C included, so a re-run
  resumes from the last bar fetched.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ccxt
import pandas as pd

from n1v1.data.bar_file import BarFile
from n1v1.data.errors import DownloadError
from n1v1.data.resample import parse_timeframe
from n1v1.data.validate import find_gaps
from n1v1.live.exchange import check_symbols, scrub
from n1v1.live.ohlcv import MS, closed_pages, enable_json_check, page_limit, rows_frame

log = logging.getLogger(__name__)

SETTLE = pd.Timedelta(seconds=10)
FLUSH_SECONDS = 30.0
MAX_WAIT_SECONDS = 60.0
MAX_RETRY_AFTER_SECONDS = 300.0
# ccxt's "may succeed if tried again": network errors, 429s, 5xx outages, broken bodies, and an
# exchange's own "unknown error" (Binance's -1000).
RETRYABLE = (ccxt.OperationFailed,)

Progress = Callable[[int, int], None]  # (bar slots covered so far, bar slots to cover)


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """What one symbol's download left in its file (``bars`` and the rest describe the whole
    file, ``written`` only this run's bars; ``first``/``last`` are None for no bars)."""

    symbol: str
    path: Path
    written: int
    bars: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    gaps: int
    missing_bars: int


class Retry:
    """Back-off for a streak of failed requests; the streak ends with any success."""

    def __init__(
        self, retries: int, wait: float, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if not (math.isfinite(wait) and wait >= 0):
            raise ValueError(f"wait must be a finite number of seconds >= 0, got {wait!r}")
        self.retries = retries
        self.wait = wait
        self.failures = 0
        self._sleep = sleep

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, exchange: ccxt.Exchange, exc: Exception, what: str) -> None:
        """Sleep before the next try, or raise `DownloadError` once the retries are used up."""
        self.failures += 1
        detail = scrub(f"{type(exc).__name__}: {str(exc)[:300]}", exchange)
        if self.failures > self.retries:
            raise DownloadError(
                f"{what} failed {self.failures} times in a row; giving up (last error: "
                f"{detail}). Bars fetched before that are stored: run the command again to resume"
            ) from None
        delay = min(self.wait * 2 ** (self.failures - 1), MAX_WAIT_SECONDS)
        if isinstance(exc, ccxt.DDoSProtection):  # RateLimitExceeded is one
            delay = max(delay, _retry_after(exchange))
        log.warning(
            "%s failed (%s); retry %d of %d in %.3g s",
            what,
            detail,
            self.failures,
            self.retries,
            delay,
        )
        self._sleep(delay)


def load_markets(exchange: ccxt.Exchange, symbols: list[str], retry: Retry) -> None:
    """Load the exchange's markets (retrying) and check every symbol is one of them
    (`n1v1.live.exchange.ExchangeSetupError` names the first that is not)."""
    what = f"{exchange.id}: loading the markets"
    while True:
        try:
            check_symbols(exchange, symbols)
        except RETRYABLE as exc:
            retry.failed(exchange, exc, what)
            continue
        except ccxt.BaseError as exc:
            raise _refused(exchange, what, exc) from None
        retry.succeeded()
        return


def download_bars(
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    file: BarFile,
    *,
    since: pd.Timestamp,
    until: pd.Timestamp | None = None,
    retry: Retry,
    progress: Progress | None = None,
    clock: Callable[[], pd.Timestamp] | None = None,
    flush_seconds: float = FLUSH_SECONDS,
) -> DownloadResult:
    """Store in ``file`` every closed bar of ``symbol`` opening in [since, until) (until: now)
    that comes after the file's last bar; the file must have been `BarFile.load`-ed or not exist.
    """
    tf_ms = int(parse_timeframe(timeframe).value // MS)
    stored = file.stored if file.stored is not None else file.load()
    start_ms = next_bar_ms = _ms(since)  # next_bar_ms: where the bars sought begin, for messages
    if stored is not None and len(stored) and _ms(stored.index[-1]) >= start_ms:
        start_ms = _ms(stored.index[-1]) + 1  # resume just after the last stored bar
        next_bar_ms = start_ms - 1 + tf_ms
    now_ms = _ms((clock or _utc_now)() - SETTLE)
    end_ms = None if until is None else _ms(until)
    horizon = now_ms if end_ms is None else min(end_ms, now_ms)
    total = max(0, -(-(horizon - start_ms) // tf_ms))
    enable_json_check(exchange)
    limit = page_limit(exchange)

    pending: list[pd.DataFrame] = []
    written = 0
    cursor = start_ms
    what = f"{exchange.id} {symbol}: fetching bars from {_at(next_bar_ms)}"

    def flush() -> None:
        nonlocal written, stored
        if pending:
            new = pd.concat(pending) if len(pending) > 1 else pending[0]
            pending.clear()  # tried once: bars the file refuses are not offered to it again
            stored = file.append(new)
            written += len(new)

    if end_ms is not None and start_ms >= end_ms:  # the file already reaches --until
        return _result(symbol, file.path, 0, stored, timeframe)
    last_flush = time.monotonic()
    try:
        while True:
            try:
                for rows in closed_pages(
                    exchange,
                    symbol,
                    timeframe,
                    since_ms=cursor,
                    now_ms=now_ms,
                    tf_ms=tf_ms,
                    limit=limit,
                    end_ms=end_ms,
                ):
                    pending.append(rows_frame(exchange.id, symbol, rows))
                    cursor = int(rows[-1][0]) + 1
                    what = f"{exchange.id} {symbol}: fetching bars from {_at(cursor - 1 + tf_ms)}"
                    retry.succeeded()
                    if progress is not None:
                        progress(min(total, -(-(cursor - start_ms) // tf_ms)), total)
                    if time.monotonic() - last_flush >= flush_seconds:
                        flush()
                        last_flush = time.monotonic()
                break
            except RETRYABLE as exc:
                retry.failed(exchange, exc, what)
            except ccxt.BaseError as exc:
                raise _refused(exchange, what, exc) from None
    finally:
        flush()
    if progress is not None:
        progress(total, total)
    return _result(symbol, file.path, written, stored, timeframe)


def _result(
    symbol: str, path: Path, written: int, bars: pd.DataFrame | None, timeframe: str
) -> DownloadResult:
    if bars is None or bars.empty:
        return DownloadResult(symbol, path, written, 0, None, None, 0, 0)
    gaps = find_gaps(bars, freq=timeframe)
    return DownloadResult(
        symbol,
        path,
        written,
        len(bars),
        bars.index[0],
        bars.index[-1],
        len(gaps),
        int(gaps["missing_bars"].sum()),
    )


def _refused(exchange: ccxt.Exchange, what: str, exc: Exception) -> DownloadError:
    detail = scrub(f"{type(exc).__name__}: {str(exc)[:300]}", exchange)
    return DownloadError(f"{what}: the exchange refused the request ({detail})")


def _retry_after(exchange: ccxt.Exchange) -> float:
    """The seconds a rate-limit answer's ``Retry-After`` header asks for (capped), else 0."""
    headers = exchange.last_response_headers or {}
    try:
        seconds = float(headers.get("Retry-After", 0))
    except (TypeError, ValueError):
        return 0.0
    return min(seconds, MAX_RETRY_AFTER_SECONDS) if math.isfinite(seconds) else 0.0


def _utc_now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC")


def _ms(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).as_unit("ns").value // MS)


def _at(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
