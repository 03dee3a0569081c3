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
from numba import njit

__all__ = [
    "REASON_NAMES",
    "TRADE_DTYPE",
    "FastConfig",
    "FastResult",
    "ohlc_arrays",
    "simulate",
    "stream_stats",
]

# exit_reason codes of the trade array, in the engine's vocabulary
REASON_NAMES = ("signal", "stop_loss", "take_profit", "trailing_stop", "time_exit", "open")
_SIGNAL, _STOP, _TP, _TRAIL, _TIME, _OPEN = range(6)

TRADE_DTYPE = np.dtype(
    [
        ("entry_idx", np.int64),
        ("exit_idx", np.int64),
        ("side", np.int8),
        ("qty", np.float64),
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("pnl", np.float64),
        ("fees", np.float64),
        ("exit_reason", np.int8),
        ("bars_held", np.int64),
    ]
)
N_COLS = len(TRADE_DTYPE.names)

# Slots of the accumulator vector the kernel fills (counts are stored as floats).
(
    A_FEES,  # sum of all fees
    A_NOTIONAL,  # sum of |qty * price| over all fills
    A_EXPOSURE,  # bars ending with a position
    A_REJECTED,  # entry orders rejected (lot rounding to 0, min notional, no cash)
    A_N_TRADES,  # closed trades (trades recorded in the trade array, open one excluded)
    A_WINS,  # closed trades with pnl > 0
    A_GROSS_WIN,  # sum of pnl > 0
    A_GROSS_LOSS,  # sum of pnl < 0 (negative)
    A_SUM_PNL,  # sum of closed pnl
    A_SUM_R,  # sum of excess bar returns r_t - rf
    A_SUM_R2,  # sum of (r_t - rf)^2 ... used for the sample deviation
    A_SUM_DOWN2,  # sum of min(r_t - rf, 0)^2
    A_MIN_R,  # smallest excess return
    A_MAX_R,  # largest excess return
    A_MAX_DD,  # max over t of 1 - E_t / peak_t, peak starting at the initial cash
    A_SUM_EQ,  # sum of equity (for mean equity)
    A_MIN_EQ_PREV,  # smallest equity among all bars but the last (returns need a positive base)
    A_FINAL_EQ,
    A_N_STORED,  # rows used in the trade array
    ACC_SIZE,
) = range(20)


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
        _require(0 <= self.slippage_bps <= 1000, "slippage_bps", "must be in [0, 1000]", 0)
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


# --------------------------------------------------------------------------- kernel


@njit(cache=True)
def _lot_floor(qty: float, lot: float) -> float:
    # same rule and tolerance as n1v1.execution.instruments.round_qty_down
    if lot <= 0.0 or qty <= 0.0:
        return max(qty, 0.0)
    return math.floor(qty / lot + 1e-9) * lot


@njit(cache=True)
def _exit(trades, acc, store, cash, t, px, fee_rate, reason, side, qty, e_idx, e_px, e_fee, held):
    """Book the fill that closes the position at `px`; returns the trade array and the new cash.

    The arithmetic follows n1v1.engine.portfolio operation for operation, so both paths round alike.
    """
    notional = qty * px
    fee = notional * fee_rate
    acc[A_FEES] += fee
    acc[A_NOTIONAL] += notional
    pnl = (px - e_px) * qty * side - (e_fee + fee)
    acc[A_N_TRADES] += 1.0
    acc[A_SUM_PNL] += pnl
    if pnl > 0.0:
        acc[A_WINS] += 1.0
        acc[A_GROSS_WIN] += pnl
    elif pnl < 0.0:
        acc[A_GROSS_LOSS] += pnl
    if store:
        row = (e_idx, t, side, qty, e_px, notional / qty, pnl, e_fee + fee, reason, held)
        row = _floats(row)
        trades = _store_trade(trades, acc, row)
    return trades, cash - (-side * notional + fee)


@njit(cache=True)
def _floats(r):
    """A trade row as ten floats (a homogeneous tuple can be indexed by a loop variable)."""
    return (
        float(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]),
        float(r[5]), float(r[6]), float(r[7]), float(r[8]), float(r[9]),
    )  # fmt: skip


@njit(cache=True)
def _store_trade(trades, acc, row):
    k = int(acc[A_N_STORED])
    if k >= trades.shape[0]:  # grow geometrically: no n_bars-sized trade buffer up front
        grown = np.empty((trades.shape[0] * 2, N_COLS))
        for i in range(k):  # element loop: a 2-D slice copy costs Numba ~10 s of compile time
            for j in range(N_COLS):
                grown[i, j] = trades[i, j]
        trades = grown
    for j in range(N_COLS):
        trades[k, j] = row[j]
    acc[A_N_STORED] = k + 1
    return trades


@njit(cache=True)
def _enter(acc, cash, raw, s, q, taker, slip, lot, sl, tp_pct, tp_r, mimic=False):
    """Fill an entry at `raw` (+slippage) and place its protective levels from the average price.

    A buy opening a long is cut to what cash pays for (no borrowing). Returns (qty, average price,
    fee, cash, stop, take-profit), NaN for an absent level; qty 0: cancelled for lack of cash.
    """
    px = raw * (1.0 + s * slip)
    if s > 0 and not mimic:
        affordable = max(cash, 0.0) / (px * (1.0 + taker))
        if affordable < q:
            q = _lot_floor(affordable, lot)  # rule insufficient_cash
            if q <= 0.0:
                acc[A_REJECTED] += 1.0
                return 0.0, px, 0.0, cash, np.nan, np.nan
    notional = q * px
    fee = notional * taker
    acc[A_FEES] += fee
    acc[A_NOTIONAL] += notional
    avg = notional / q  # the portfolio's average entry; may differ from px in the last bit
    stop = avg * (1.0 - s * sl)
    tp = avg * (1.0 + s * tp_pct) if tp_r != tp_r else avg + s * tp_r * abs(avg - stop)
    return q, avg, fee, cash - (s * notional + fee), stop, tp


@njit(cache=True)
def run_kernel(
    open_, high, low, close, targets, ma_fast, ma_slow, warmup,
    cash0, taker, maker, slip, fill_close, qty_fixed, fraction, lot, min_notional,
    sl, tp_pct, tp_r, trail, time_exit, allow_short, rf_bar, store,
):  # fmt: skip
    """Simulate one symbol bar by bar (docs/execution.md, "The order of events in one bar").

    Targets come from `targets` when `warmup < 0`, else from the cross of two moving averages
    (+1 fast > slow, -1 fast < slow, 0 before `warmup`): the sweep's way to avoid a target array.
    The decision state mirrors the engine: `intended` is the direction being traded towards
    (position plus working orders), `blocked` the direction not re-entered after a protective or
    time exit until the target differs from it.
    """
    n = open_.shape[0]
    m = n if store else 0
    equity, position, cash_out = np.empty(m), np.empty(m), np.empty(m)
    trades = np.empty((64 if store else 1, N_COLS))
    acc = np.zeros(ACC_SIZE)
    acc[A_MIN_R], acc[A_MAX_R], acc[A_MIN_EQ_PREV] = np.inf, -np.inf, np.inf
    has_sl, has_trail, has_time = sl == sl, trail == trail, time_exit > 0
    cash, side, qty = cash0, 0, 0.0  # side: +1 long, -1 short, 0 flat; qty > 0
    e_idx, e_px, e_fee, held = -1, 0.0, 0.0, 0
    stop, tp, extreme = np.nan, np.nan, 0.0
    intended, blocked = 0, 0
    pend_close, pend_reason, pend_side, pend_qty = False, 0, 0, 0.0
    prev_eq, peak_eq = cash0, cash0
    entry_cost = 1.0 + (taker + slip)
    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        # 1. working market orders fill at this open (next_open); a reversal is two fills
        mimic = False
        if pend_close:
            mimic = side < 0
            px = o * (1.0 - side * slip)
            trades, cash = _exit(
                trades, acc, store, cash, t, px, taker, pend_reason,
                side, qty, e_idx, e_px, e_fee, held,
            )  # fmt: skip
            side, pend_close = 0, False
        if pend_side != 0:
            q, px, fee, cash, st, tk = _enter(
                acc, cash, o, pend_side, pend_qty, taker, slip, lot, sl, tp_pct, tp_r, mimic
            )
            if q > 0.0:
                side, qty, e_idx, held = pend_side, q, t, 0
                e_px, e_fee, extreme, stop, tp = px, fee, px, st, tk
            pend_side = 0
        # 2. stops, trailing stops and take-profits against this bar's range (a position opened
        # at this open is checked; one opened at this bar's close under fill=close is not open yet)
        if side != 0:
            level, reason = stop, _STOP
            if has_trail:
                tl = extreme * (1.0 - side * trail)
                if not has_sl or (side > 0 and tl > stop) or (side < 0 and tl < stop):
                    level, reason = tl, _TRAIL
            px, fee_rate = np.nan, taker
            if side > 0:
                if o <= level:  # gapped through: the stop fills at the open
                    px = o * (1.0 - slip)
                elif lo <= level:
                    px = level * (1.0 - slip)
                elif h >= tp:  # limit: no slippage, maker fee, the open if it gapped beyond
                    px, fee_rate, reason = max(o, tp), maker, _TP
            else:
                if o >= level:
                    px = o * (1.0 + slip)
                elif h >= level:
                    px = level * (1.0 + slip)
                elif lo <= tp:
                    px, fee_rate, reason = min(o, tp), maker, _TP
            if px == px:
                trades, cash = _exit(
                    trades, acc, store, cash, t, px, fee_rate, reason,
                    side, qty, e_idx, e_px, e_fee, held,
                )  # fmt: skip
                blocked, side, intended = side, 0, 0
            else:
                held += 1
                if has_trail:  # this bar's extreme counts only after its own check
                    extreme = max(extreme, h) if side > 0 else min(extreme, lo)
        # 3. mark to the close: E_t, the equity orders decided at this close are sized from
        eq_mark = cash + side * qty * c
        # 5. time exit after `time_exit` bars held (the entry bar counts under next_open)
        if has_time and side != 0 and intended != 0 and held >= time_exit:
            blocked, intended = side, 0
            if fill_close:
                px = c * (1.0 - side * slip)
                trades, cash = _exit(
                    trades, acc, store, cash, t, px, taker, _TIME,
                    side, qty, e_idx, e_px, e_fee, held,
                )  # fmt: skip
                side = 0
            else:
                pend_close, pend_reason = True, _TIME
        # 6. targets at the close -> orders (filled now under `close`, at t+1's open otherwise)
        if warmup < 0:
            desired = targets[t]
        elif t < warmup:
            desired = 0
        else:
            f, s = ma_fast[t], ma_slow[t]
            desired = 1 if f > s else (-1 if f < s else 0)
        if desired < 0 and not allow_short:
            desired = 0
        if blocked != 0 and desired != blocked:
            blocked = 0
        if blocked != 0 and desired == blocked:
            desired = 0
        if desired != intended:
            pend_close = False  # a working market order was meant for the old course
            if side != 0 and side == desired:
                intended = desired
            else:
                if side != 0:  # close the position: one order, a reversal adds a second
                    if fill_close:
                        px = c * (1.0 - side * slip)
                        trades, cash = _exit(
                            trades, acc, store, cash, t, px, taker, _SIGNAL,
                            side, qty, e_idx, e_px, e_fee, held,
                        )  # fmt: skip
                        side = 0
                    else:
                        pend_close, pend_reason = True, _SIGNAL
                intended = 0
                if desired != 0:  # sized from the signal bar's close and equity (E_t, c_t)
                    q = qty_fixed if qty_fixed == qty_fixed else (
                        fraction * eq_mark / (c * entry_cost) if eq_mark > 0.0 else 0.0
                    )  # fmt: skip
                    q = _lot_floor(q, lot)
                    if q <= 0.0 or q * c < min_notional:  # rules sizing / min_notional
                        acc[A_REJECTED] += 1.0
                    else:
                        intended = desired
                        if fill_close:
                            q, px, fee, cash, st, tk = _enter(
                                acc, cash, c, desired, q, taker, slip, lot, sl, tp_pct, tp_r
                            )
                            if q > 0.0:
                                side, qty, e_idx, held = desired, q, t, 0
                                e_px, e_fee, extreme, stop, tp = px, fee, px, st, tk
                        else:
                            pend_side, pend_qty = desired, q
        if t + 1 == n:  # orders decided at the last bar never fill
            pend_close, pend_side = False, 0
        # record the bar: marked at the close after this bar's fills
        pos = side * qty
        eq = cash + pos * c
        if store:
            equity[t], position[t], cash_out[t] = eq, pos, cash
        if side != 0:
            acc[A_EXPOSURE] += 1.0
        r = eq / prev_eq - 1.0 - rf_bar
        acc[A_SUM_R] += r
        acc[A_SUM_R2] += r * r
        if r < 0.0:
            acc[A_SUM_DOWN2] += r * r
        acc[A_MIN_R] = min(acc[A_MIN_R], r)
        acc[A_MAX_R] = max(acc[A_MAX_R], r)
        if t + 1 < n:
            acc[A_MIN_EQ_PREV] = min(acc[A_MIN_EQ_PREV], eq)
        peak_eq = max(peak_eq, eq)
        acc[A_MAX_DD] = max(acc[A_MAX_DD], 1.0 - eq / peak_eq)
        acc[A_SUM_EQ] += eq
        prev_eq = eq
    acc[A_FINAL_EQ] = prev_eq
    if store and side != 0:  # the trade still open: no exit, pnl 0, fees = its entry fee
        row = (e_idx, -1, side, qty, e_px, np.nan, 0.0, e_fee, _OPEN, 0)
        trades = _store_trade(trades, acc, _floats(row))
    return equity, position, cash_out, trades, acc


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


_NO_MA = np.empty(0)


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
        o, h, lo, c, tg, _NO_MA, _NO_MA, -1, *config.kernel_args(), 0.0, True
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
        ma_f, ma_s, warmup = _NO_MA, _NO_MA, -1
    else:
        tg = np.empty(0, dtype=np.int8)
        ma_f, ma_s, warmup = cross
        if ma_f.shape != arrays[0].shape or ma_s.shape != arrays[0].shape or warmup < 0:
            raise ValueError("stream_stats: cross arrays must match the bars and warmup be >= 0")
    args = config.kernel_args()
    return run_kernel(*arrays, tg, ma_f, ma_s, int(warmup), *args, float(rf_bar), False)[4]
