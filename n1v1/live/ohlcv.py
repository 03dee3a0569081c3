"""Closed OHLCV bars from an exchange, page by page: the one paging loop of the package.

The live feed (`n1v1.live.ccxt_feed`) and the downloader (`n1v1.live.download`) both read bars
through `closed_pages`, so both follow the same rules:

- **Closed bars only.** A bar is closed when ``open time + timeframe <= now``. Exchanges return
  the still-forming bar with every kline request; it is dropped (and fetched again once closed),
  since its close has not happened yet.
- **Paging.** ``fetch_ohlcv(since, limit)`` is called from ``since`` on, each next page starting
  just after the last bar received, until a page brings nothing new, the bar after the last one
  would still be forming, or it would open at or after ``end``. Rows before the requested
  ``since`` (an exchange that rounds it down) are ignored, so no bar is handed over twice.
- **Broken responses are retryable, impossible bars are not.** A body that is not JSON or not a
  list of six-value rows is a ``ccxt.BadResponse`` (like a network error, worth another try); bars
  that parse but break a bar rule (non-finite, high below low, ...) are a `DataError` naming the
  exchange, symbol and bar time, from the same strict checks every loader applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ccxt
import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.loaders import from_ccxt

DEFAULT_PAGE_LIMIT = 1000  # bars per fetch_ohlcv call when ccxt does not state the venue's maximum
MS = 1_000_000  # nanoseconds per millisecond


def closed_pages(
    exchange: ccxt.Exchange,
    symbol: str,
    timeframe: str,
    *,
    since_ms: int,
    now_ms: int,
    tf_ms: int,
    limit: int,
    end_ms: int | None = None,
) -> Iterator[list[list[Any]]]:
    """Pages of closed ``[ms, open, high, low, close, volume]`` rows, oldest first, opening at
    or after ``since_ms`` (and before ``end_ms``, if given); each page is non-empty.

    ``exchange.enableLastJsonResponse`` must be on (see `enable_json_check`).
    """
    since = since_ms
    while True:
        exchange.last_json_response = None
        rows = exchange.fetch_ohlcv(symbol, timeframe, since=since, limit=limit)
        if exchange.last_json_response is None:
            # ccxt hands back [] for a 200 whose body is not JSON (an HTML error page, a cut-off
            # array): without this check that would read as "no more bars".
            raise ccxt.BadResponse(f"{exchange.id} {symbol}: OHLCV response body is not JSON")
        closed = [
            r
            for r in checked_shape(exchange.id, symbol, rows)
            if r[0] >= since and r[0] + tf_ms <= now_ms and (end_ms is None or r[0] < end_ms)
        ]
        if not closed:
            return
        yield closed
        last_ms = int(closed[-1][0])
        since = last_ms + 1
        if last_ms + 2 * tf_ms > now_ms or (end_ms is not None and last_ms + tf_ms >= end_ms):
            return  # the bar after the last one is still forming, or past the end: done


def enable_json_check(exchange: ccxt.Exchange) -> None:
    """Keep each parsed response body, which `closed_pages` uses to tell "no bars" from a body
    that is not JSON."""
    exchange.enableLastJsonResponse = True


def rows_frame(exchange_id: str, symbol: str, rows: list[list[Any]]) -> pd.DataFrame:
    """The rows as a bars frame, validated strictly; a `DataError` names the bar's time."""
    try:
        return from_ccxt(rows, symbol)
    except DataError as exc:
        row = exc.row if exc.row is not None and 0 < exc.row <= len(rows) else 1
        at = pd.Timestamp(int(rows[row - 1][0]), unit="ms", tz="UTC").isoformat()
        raise DataError(
            f"{exchange_id} {symbol} bar at {at}: {exc}",
            source=exc.source,
            row=exc.row,
            field=exc.field,
            count=exc.count,
        ) from exc


def page_limit(exchange: ccxt.Exchange) -> int:
    """The venue's maximum bars per request as ccxt states it, else `DEFAULT_PAGE_LIMIT`."""
    features = getattr(exchange, "features", None) or {}
    spot = features.get("spot") or {}
    limit = (spot.get("fetchOHLCV") or {}).get("limit")
    return int(limit) if isinstance(limit, int) and limit > 0 else DEFAULT_PAGE_LIMIT


def checked_shape(exchange_id: str, symbol: str, rows: Any) -> list[list[Any]]:
    """The rows, if the response had the API's shape; else ccxt.BadResponse, which is retried.

    ccxt does not reject every broken body: a truncated JSON array comes back as rows of None
    built from its characters. A missing cell means the response is broken, not the market, so
    it is retried; values that are present but impossible are left to `from_ccxt` to reject.
    """
    if not isinstance(rows, list):
        raise ccxt.BadResponse(f"{exchange_id} {symbol}: OHLCV response is not a list")
    for i, row in enumerate(rows):
        if (
            not isinstance(row, list | tuple)
            or len(row) != 6
            or not isinstance(row[0], int)
            or any(cell is None for cell in row)
        ):
            raise ccxt.BadResponse(
                f"{exchange_id} {symbol}: OHLCV response row {i + 1} is malformed: {row!r:.120}"
            )
    return rows
