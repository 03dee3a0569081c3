"""The Numba kernel of the fast path: one loop over bars implementing docs/execution.md.

Kept apart from `fast.py` (configuration, results and the Python wrappers) so the compiled code
can be read on its own. `run_kernel` either records per-bar arrays and the trade list
(`store=True`) or only streams the summary statistics a sweep needs (`store=False`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

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
    A_MIN_EQ_PREV,  # min(initial cash, E_0 .. E_{n-2}): returns need a positive base
    A_FINAL_EQ,
    A_N_STORED,  # rows used in the trade array
    ACC_SIZE,
) = range(20)


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
def _enter(acc, cash, raw, s, q, taker, slip, lot, sl, tp_pct, tp_r):
    """Fill an entry at `raw` (+slippage) and place its protective levels from the average price.

    A buy opening a long is cut to what cash pays for (no borrowing). Returns (qty, average price,
    fee, cash, stop, take-profit), NaN for an absent level; qty 0: cancelled for lack of cash.
    """
    px = raw * (1.0 + s * slip)
    if s > 0:
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
    has_sl, has_trail, has_time = sl == sl, trail == trail, time_exit > 0
    cash, side, qty = cash0, 0, 0.0  # side: +1 long, -1 short, 0 flat; qty > 0
    e_idx, e_px, e_fee, held = -1, 0.0, 0.0, 0
    stop, tp, extreme = np.nan, np.nan, 0.0
    intended, blocked = 0, 0
    pend_close, pend_reason, pend_side, pend_qty = False, 0, 0, 0.0
    prev_eq, peak_eq, min_eq, max_dd = cash0, cash0, cash0, 0.0
    s_r, s_r2, s_d2, s_eq, min_r, max_r, exposure = 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0
    entry_cost = 1.0 + (taker + slip)
    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        # 1. working market orders fill at this open (next_open); a reversal is two fills
        if pend_close:
            px = o * (1.0 - side * slip)
            trades, cash = _exit(
                trades, acc, store, cash, t, px, taker, pend_reason,
                side, qty, e_idx, e_px, e_fee, held,
            )  # fmt: skip
            side, pend_close = 0, False
        if pend_side != 0:
            q, px, fee, cash, st, tk = _enter(
                acc, cash, o, pend_side, pend_qty, taker, slip, lot, sl, tp_pct, tp_r
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
        # record the bar: marked at the close after this bar's fills. Summary statistics live in
        # locals (registers), not in `acc`, which the compiler would have to store every bar.
        pos = side * qty
        eq = cash + pos * c
        if store:
            equity[t], position[t], cash_out[t] = eq, pos, cash
        exposure += side != 0
        r = eq / prev_eq - 1.0 - rf_bar
        s_r += r
        s_r2 += r * r
        s_d2 += min(r, 0.0) ** 2
        min_r, max_r = min(min_r, r), max(max_r, r)
        min_eq = min(min_eq, prev_eq)  # over cash0, E_0 .. E_{n-2}: the bases of the returns
        peak_eq = max(peak_eq, eq)
        if eq < peak_eq * (1.0 - max_dd):  # only then can 1 - eq / peak exceed max_dd
            max_dd = max(max_dd, 1.0 - eq / peak_eq)
        s_eq += eq
        prev_eq = eq
    acc[A_EXPOSURE], acc[A_SUM_R], acc[A_SUM_R2], acc[A_SUM_DOWN2] = exposure, s_r, s_r2, s_d2
    acc[A_MIN_R], acc[A_MAX_R], acc[A_MIN_EQ_PREV] = min_r, max_r, min_eq
    acc[A_MAX_DD], acc[A_SUM_EQ], acc[A_FINAL_EQ] = max_dd, s_eq, prev_eq
    if store and side != 0:  # the trade still open: no exit, pnl 0, fees = its entry fee
        row = (e_idx, -1, side, qty, e_px, np.nan, 0.0, e_fee, _OPEN, 0)
        trades = _store_trade(trades, acc, _floats(row))
    return equity, position, cash_out, trades, acc
