"""The fake's public market data: an in-memory table of klines the test fills.

``GET /api/v3/klines`` honours ``startTime``/``endTime``/``limit`` the way Binance does (both
bounds inclusive on the open time, oldest first, ``limit`` default 500 and capped at 1000; with no
``startTime`` the newest bars are returned). Bars live per market id (``BTCUSDT``) and interval,
keyed by open time in epoch ms; what the table holds is what the "exchange" has, including a
still-forming bar if the test puts one in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .markets import INTERVAL_MS, OHLCV, kline_row
from .wire import ApiError

MAX_LIMIT = 1000
DEFAULT_LIMIT = 500


class Bars:
    """Klines per (market id, interval); not thread-safe (the server locks around it)."""

    def __init__(self) -> None:
        self._bars: dict[tuple[str, str], dict[int, OHLCV]] = {}

    def put(self, market_id: str, interval: str, start_ms: int, bars: Iterable[OHLCV]) -> list[int]:
        """Store consecutive bars from ``start_ms`` on; returns their open times."""
        step = INTERVAL_MS[interval]
        table = self._bars.setdefault((market_id, interval), {})
        stamps = []
        for i, bar in enumerate(bars):
            table[start_ms + i * step] = tuple(float(x) for x in bar)  # type: ignore[assignment]
            stamps.append(start_ms + i * step)
        return stamps

    def klines(self, markets: Mapping[str, object], q: Mapping[str, str]) -> list[list[Any]]:
        market_id, interval = q.get("symbol", ""), q.get("interval", "")
        if market_id not in markets:
            raise ApiError(-1121, "Invalid symbol.")
        if interval not in INTERVAL_MS:
            raise ApiError(-1120, "Invalid interval.")
        limit = min(int(q.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        start = int(q["startTime"]) if "startTime" in q else None
        end = int(q["endTime"]) if "endTime" in q else None
        table = self._bars.get((market_id, interval), {})
        stamps = sorted(
            t for t in table if (start is None or t >= start) and (end is None or t <= end)
        )
        stamps = stamps[:limit] if start is not None else stamps[-limit:]
        step = INTERVAL_MS[interval]
        return [kline_row(t, step, table[t]) for t in stamps]
