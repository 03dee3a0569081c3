"""Compiled single-symbol fast path of the backtester.

The event-driven `TradingEngine` models every order as an object: clear, but far too slow for
million-bar backtests and parameter sweeps. This module runs the same execution model
(docs/execution.md: the order of events in a bar, fills, fees, slippage, stops, take-profits,
trailing stops, time exits, sizing, lot and min-notional rules, the cash limit) in one Numba kernel
over NumPy arrays, for the configurations it supports: one symbol, market entries and exits, fixed
slippage, the participation cap. tests/test_fast_parity.py proves it gives the same trades and
equity as the engine.

The same kernel also streams the summary statistics a sweep needs (`store=False`): no per-bar arrays
are allocated, and there is exactly one implementation of the fill rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
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
    first_outside_unit,
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
    participation_cap: float | None = None  # an order fills at most this share of bar volume
    limit_fill: str = "touch"  # or "through": a take-profit needs the bar to trade beyond it
    close_at_end: bool = False  # close a position still open at the last close

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
        p = self.participation_cap
        _require(p is None or 0 < p <= 1, "participation_cap", "must be in (0, 1] or None", p)
        if self.limit_fill not in ("touch", "through"):
            raise ValueError(f"limit_fill: must be 'touch' or 'through', got {self.limit_fill!r}")

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
            opt(self.participation_cap),
            self.limit_fill == "through",
            bool(self.close_at_end),
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


def volume_array(volume, n: int, config: FastConfig) -> np.ndarray:
    """Bar volumes (finite, >= 0) when the participation cap reads them, else an empty array."""
    if config.participation_cap is None:
        return _NO_VOLUME
    if volume is None:
        raise ValueError("volume: required with participation_cap (fills are capped by it)")
    v = np.ascontiguousarray(volume, dtype=np.float64)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"volume: expected shape ({n},), got {v.shape}")
    bad = ~(np.isfinite(v) & (v >= 0.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"volume: must be finite and >= 0; found {v[i]} at bar {i}")
    return v


_NO_VOLUME = np.empty(0)


def _targets(targets: np.ndarray, n: int) -> np.ndarray:
    t = np.asarray(targets)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"targets: expected shape ({n},), got {t.shape}")
    if t.dtype != np.int8:
        if not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.bool_)):
            raise ValueError(f"targets: expected integers in {{-1, 0, 1}}, got dtype {t.dtype}")
        if np.abs(t).max(initial=0) > 1:
            i = int(np.argmax(np.abs(t) > 1))
            raise ValueError(f"targets: values must be -1, 0 or 1; found {t[i]} at bar {i}")
    t = np.ascontiguousarray(t, dtype=np.int8)
    i = first_outside_unit(t)
    if i >= 0:
        raise ValueError(f"targets: values must be -1, 0 or 1; found {t[i]} at bar {i}")
    return t


def simulate(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    targets: np.ndarray,
    config: FastConfig,
    *,
    volume: np.ndarray | None = None,
) -> FastResult:
    """Backtest one symbol on target positions (-1/0/+1 per bar, read at each bar's close).

    `volume` is needed (and read) only with a participation cap.
    """
    o, h, lo, c = ohlc_arrays(open_, high, low, close)
    tg = _targets(targets, o.shape[0])
    v = volume_array(volume, o.shape[0], config)
    equity, position, cash, rows, acc = run_kernel(
        o, h, lo, c, v, tg, *config.kernel_args(), 0.0, True
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
    targets: np.ndarray,
    config: FastConfig,
    *,
    volume: np.ndarray | None = None,
    rf_bar: float = 0.0,
    validated: bool = False,
) -> np.ndarray:
    """Run the kernel without per-bar output; returns the accumulator vector (A_* slots).

    `validated=True` skips the checks of the bars and volumes (the sweep validates them once, not
    once per parameter set); the targets are always checked.
    """
    arrays = (open_, high, low, close) if validated else ohlc_arrays(open_, high, low, close)
    n = arrays[0].shape[0]
    tg = _targets(targets, n)
    v = volume if validated and volume is not None else volume_array(volume, n, config)
    args = config.kernel_args()
    return run_kernel(*arrays, v, tg, *args, float(rf_bar), False)[4]
