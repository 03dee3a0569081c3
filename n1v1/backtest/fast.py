"""Compiled single-symbol fast path of the backtester.

The event-driven `TradingEngine` models every order as an object: clear, but far too slow for
million-bar backtests and parameter sweeps. This module runs the same execution model
(docs/execution.md: the order of events in a bar, fills, fees, slippage, stops, take-profits,
trailing stops, time exits, sizing, lot and min-notional rules, the cash limit) in one Numba kernel
over NumPy arrays, for the configurations it supports: one symbol, market entries and exits, fixed
slippage. tests/test_fast_parity.py proves it gives the same trades and equity as the engine.

The same kernel also streams the summary statistics a sweep needs (`store=False`): no per-bar arrays
are allocated, and there is exactly one implementation of the fill rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NO_MA",
    "REASON_NAMES",
    "TRADE_DTYPE",
    "FastConfig",
    "FastResult",
    "ohlc_arrays",
    "simulate",
    "stream_stats",
]

from n1v1.backtest.fast_kernel import (
    A_EXPOSURE,
    A_FEES,
    A_N_STORED,
    A_NOTIONAL,
    A_REJECTED,
    REASON_NAMES,
    TRADE_DTYPE,
    run_kernel,
)


@dataclass(frozen=True, slots=True)
class FastConfig:
    """The subset of the engine's settings the fast path implements (see docs/execution.md)."""

    cash: float = 10_000.0
    taker_fee: float = 0.001
    maker_fee: float = 0.001
    slippage_bps: float = 0.0
    fill: str = "next_open"  # or "close"
    qty: float | None = None  # fixed quantity sizing when set
    fraction: float = 1.0  # fraction-of-equity sizing otherwise
    lot_size: float = 0.0  # 0 = no rounding; else qty rounded DOWN to a multiple
    min_notional: float = 0.0  # entry orders below are rejected (no trade)
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    take_profit_r: float | None = None  # R-multiple of the stop distance (needs a stop)
    trailing_stop_pct: float | None = None
    time_exit_bars: int | None = None
    allow_short: bool = False

    def __post_init__(self) -> None:
        _require(self.cash > 0, "cash", "must be > 0", self.cash)
        for name in ("taker_fee", "maker_fee"):
            value = getattr(self, name)
            _require(0 <= value < 0.1, name, "must be in [0, 0.1)", value)
        _require(
            0 <= self.slippage_bps <= 1000,
            "slippage_bps",
            "must be in [0, 1000]",
            self.slippage_bps,
        )
        if self.fill not in ("next_open", "close"):
            raise ValueError(f"fill: must be 'next_open' or 'close', got {self.fill!r}")
        _require(self.qty is None or self.qty > 0, "qty", "must be > 0 or None", self.qty)
        _require(0 < self.fraction <= 10, "fraction", "must be in (0, 10]", self.fraction)
        _require(self.lot_size >= 0, "lot_size", "must be >= 0", self.lot_size)
        _require(self.min_notional >= 0, "min_notional", "must be >= 0", self.min_notional)
        for name in ("stop_loss_pct", "trailing_stop_pct"):
            value = getattr(self, name)
            _require(value is None or 0 < value < 1, name, "must be in (0, 1) or None", value)
        for name in ("take_profit_pct", "take_profit_r"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, "must be > 0 or None", value)
        if self.take_profit_r is not None and self.stop_loss_pct is None:
            raise ValueError("take_profit_r: needs a stop (stop_loss_pct)")
        if self.take_profit_r is not None and self.take_profit_pct is not None:
            raise ValueError("take_profit_r: set either take_profit_r or take_profit_pct")
        t = self.time_exit_bars
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | np.integer) or t < 1):
            raise ValueError(f"time_exit_bars: must be an integer >= 1 or None, got {t!r}")

    def kernel_args(self) -> tuple:
        """Scalars for the kernel; None becomes NaN (or -1 for the bar count)."""
        nan = math.nan

        def opt(v: float | None) -> float:
            return nan if v is None else float(v)

        return (
            float(self.cash),
            float(self.taker_fee),
            float(self.maker_fee),
            float(self.slippage_bps) / 10_000.0,  # as the venue's slippage model computes it
            self.fill == "close",
            opt(self.qty),
            float(self.fraction),
            float(self.lot_size),
            float(self.min_notional),
            opt(self.stop_loss_pct),
            opt(self.take_profit_pct),
            opt(self.take_profit_r),
            opt(self.trailing_stop_pct),
            -1 if self.time_exit_bars is None else int(self.time_exit_bars),
            bool(self.allow_short),
        )


def _require(ok: bool, field: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{field}: {rule}, got {value!r}")


@dataclass(frozen=True, slots=True)
class FastResult:
    """Per-bar arrays (marked at each bar's close, after that bar's fills) and the trade list."""

    equity: np.ndarray
    position: np.ndarray
    cash: np.ndarray
    trades: np.ndarray  # structured, TRADE_DTYPE
    fees_paid: float
    traded_notional: float
    exposure_bars: int
    n_rejected: int


# --------------------------------------------------------------------------- Python wrappers


def ohlc_arrays(open_, high, low, close) -> tuple[np.ndarray, ...]:
    """Contiguous float64 price arrays of one length, finite and > 0, or a ValueError naming one."""
    arrays = []
    for name, x in (("open", open_), ("high", high), ("low", low), ("close", close)):
        a = np.ascontiguousarray(x, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
        arrays.append(a)
    n = arrays[0].shape[0]
    if n == 0:
        raise ValueError("open: no bars; a backtest needs at least one bar")
    for name, a in zip(("high", "low", "close"), arrays[1:], strict=True):
        if a.shape[0] != n:
            raise ValueError(f"{name}: length {a.shape[0]} differs from open's {n}")
    for name, a in zip(("open", "high", "low", "close"), arrays, strict=True):
        bad = ~(np.isfinite(a) & (a > 0.0))
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name}: prices must be finite and > 0; found {a[i]} at bar {i}")
    return tuple(arrays)


def _targets(targets: np.ndarray, n: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"targets: expected shape ({n},), got {t.shape}")
    if t.dtype != np.int8:
        if not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.bool_)):
            raise ValueError(f"targets: expected integers in {{-1, 0, 1}}, got dtype {t.dtype}")
        t = t.astype(np.int8) if np.abs(t).max(initial=0) <= 1 else t
    bad = (t < -1) | (t > 1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"targets: values must be -1, 0 or 1; found {t[i]} at bar {i}")
    return np.ascontiguousarray(t, dtype=np.int8)


NO_MA = np.empty(0)


def simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: FastConfig,
) -> FastResult:
    """Backtest one symbol on target positions (-1/0/+1 per bar, read at each bar's close)."""
    o, h, lo, c = ohlc_arrays(open_, high, low, close)
    tg = _targets(targets, o.shape[0])
    equity, position, cash, rows, acc = run_kernel(
        o, h, lo, c, tg, NO_MA, NO_MA, -1, *config.kernel_args(), 0.0, True
    )
    k = int(acc[A_N_STORED])
    trades = np.empty(k, dtype=TRADE_DTYPE)
    for j, name in enumerate(TRADE_DTYPE.names):
        trades[name] = rows[:k, j]
    return FastResult(
        equity=equity,
        position=position,
        cash=cash,
        trades=trades,
        fees_paid=float(acc[A_FEES]),
        traded_notional=float(acc[A_NOTIONAL]),
        exposure_bars=int(acc[A_EXPOSURE]),
        n_rejected=int(acc[A_REJECTED]),
    )


def stream_stats(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    config: FastConfig,
    *,
    targets: np.ndarray | None = None,
    cross: tuple[np.ndarray, np.ndarray, int] | None = None,
    rf_bar: float = 0.0,
    validated: bool = False,
) -> np.ndarray:
    """Run the kernel without per-bar output; returns the accumulator vector (A_* slots).

    Give either `targets` or `cross=(ma_fast, ma_slow, warmup)`; the latter computes the moving
    average cross target inside the loop. `validated=True` skips the input checks (the sweep
    validates the bars once, not once per parameter set).
    """
    if (targets is None) == (cross is None):
        raise ValueError("stream_stats: give exactly one of targets or cross")
    arrays = (open_, high, low, close) if validated else ohlc_arrays(open_, high, low, close)
    if cross is None:
        tg = targets if validated else _targets(targets, arrays[0].shape[0])
        ma_f, ma_s, warmup = NO_MA, NO_MA, -1
    else:
        tg = np.empty(0, dtype=np.int8)
        ma_f, ma_s, warmup = cross
        if ma_f.shape != arrays[0].shape or ma_s.shape != arrays[0].shape or warmup < 0:
            raise ValueError("stream_stats: cross arrays must match the bars and warmup be >= 0")
    args = config.kernel_args()
    return run_kernel(*arrays, tg, ma_f, ma_s, int(warmup), *args, float(rf_bar), False)[4]
