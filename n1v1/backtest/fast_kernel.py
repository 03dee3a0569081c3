"""The Numba kernel of the fast path: one loop over bars implementing docs/execution.md.

Kept apart from `fast.py` (configuration, results and the Python wrappers) so the compiled code
can be read on its own. `run_kernel` either records per-bar arrays and the trade list
(`store=True`) or only streams the summary statistics a sweep needs (`store=False`). It takes
target positions only: what to hold is the strategy's business, how it fills is the kernel's.

It is the compiled twin of the event-driven engine (n1v1.engine: TradingEngine, SimulatedVenue,
Portfolio) for one symbol, and follows their arithmetic operation for operation, so both paths
round alike; tests/test_fast_parity.py holds them together.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# exit_reason codes of the trade array, in the engine's vocabulary
REASON_NAMES = (
    "signal",
    "stop_loss",
    "take_profit",
    "trailing_stop",
    "time_exit",
    "open",
    "end_of_data",
)
_SIGNAL, _STOP, _TP, _TRAIL, _TIME, _OPEN, _END = range(7)

TRADE_DTYPE = np.dtype(
    [
        ("entry_idx", np.int64),
        ("exit_idx", np.int64),
        ("side", np.int8),
        ("qty", np.float64),  # quantity entered
        ("entry_price", np.float64),
        ("exit_price", np.float64),
        ("pnl", np.float64),
        ("fees", np.float64),
        ("exit_reason", np.int8),
        ("bars_held", np.int64),
        ("open_qty", np.float64),  # quantity still held (0 for a closed trade)
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

# Slots of the open trade's books (n1v1.engine.portfolio._OpenTrade), touched only by fills.
(
    T_ENTRY_IDX,  # bar of the first entry fill
    T_QTY,  # quantity entered
    T_ENTRY_VALUE,  # sum of entry price * qty
    T_FEES,  # fees of every fill so far
    T_GROSS,  # realised on partial exits: sum of (price - average entry) * qty * side
    T_EXIT_QTY,
    T_EXIT_VALUE,
    T_CLOSED,  # trades closed in this bar, waiting in the `closed` rows for the trade array
    T_SIZE,
) = range(9)
# At most three trades close in one bar (at the open, by a stop, at the close): room to spare.
_MAX_CLOSED_PER_BAR = 8

_FLAT_TOLERANCE = 1e-9  # n1v1.engine.portfolio: a residue below this share of the trade is zero
_DONE_TOLERANCE = 1e-12  # n1v1.domain.Order.apply_fill: an order this close to its qty is filled


@njit(cache=True)
def _lot_floor(qty: float, lot: float) -> float:
    # same rule and tolerance as n1v1.execution.instruments.round_qty_down
    if lot <= 0.0 or qty <= 0.0:
        return max(qty, 0.0)
    return math.floor(qty / lot + 1e-9) * lot


@njit(cache=True)
def first_outside_unit(targets) -> int:
    """Index of the first target outside {-1, 0, 1}, or -1 (one pass, no temporaries)."""
    for t in range(targets.shape[0]):
        if targets[t] < -1 or targets[t] > 1:
            return t
    return -1


@njit(cache=True)
def _tradable(remaining: float, cap: float, volume: float, lot: float) -> float:
    """An order's remainder capped at cap x bar volume, rounded down to the lot (the venue's
    `_tradable_qty`); cap NaN = no cap."""
    if cap != cap:
        return remaining
    return min(remaining, _lot_floor(cap * volume, lot))


@njit(cache=True)
def _floats(r):
    """A trade row as floats (a homogeneous tuple can be indexed by a loop variable)."""
    return (
        float(r[0]), float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
        float(r[6]), float(r[7]), float(r[8]), float(r[9]), float(r[10]),
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
def _store_closed(trades, acc, closed, book):
    """Move the rows of the trades closed in this bar to the trade array, in closing order."""
    for i in range(int(book[T_CLOSED])):
        trades = _store_trade(trades, acc, closed[i])
    book[T_CLOSED] = 0.0
    return trades


@njit(cache=True)
def _add(acc, book, cash, t, px, q, s, fee_rate, held_qty, avg):
    """Book an entry fill of `q` at `px` (Portfolio._add); returns (cash, qty held, average)."""
    notional = q * px
    fee = notional * fee_rate
    acc[A_FEES] += fee
    acc[A_NOTIONAL] += notional
    if held_qty == 0.0:  # a new trade (rows closed earlier in this bar stay queued)
        book[:T_CLOSED] = 0.0
        book[T_ENTRY_IDX] = t
    avg = (avg * held_qty + px * q) / (held_qty + q)
    book[T_ENTRY_VALUE] += px * q
    book[T_QTY] += q
    book[T_FEES] += fee
    return cash - (s * notional + fee), held_qty + q, avg


@njit(cache=True)
def _reduce(acc, book, closed, store, cash, t, px, q, side, fee_rate, reason, held_qty, avg, held):
    """Book an exit fill of `q` at `px` (Portfolio._reduce); returns (cash, qty held).

    Held 0.0: the trade closed (pnl = realised gross - every fee); with `store` its row waits in
    `closed` until the loop moves it to the trade array, at one place, once per bar (a trade array
    passed through every fill helper costs the hot loop a third of its speed).
    """
    notional = q * px
    fee = notional * fee_rate
    acc[A_FEES] += fee
    acc[A_NOTIONAL] += notional
    cash = cash - (-side * notional + fee)
    book[T_GROSS] += (px - avg) * q * side
    book[T_EXIT_QTY] += q
    book[T_EXIT_VALUE] += px * q
    book[T_FEES] += fee * q / q  # the portfolio's closing share of the fee
    held_qty = held_qty - q
    if held_qty > book[T_QTY] * _FLAT_TOLERANCE:
        return cash, held_qty
    pnl = book[T_GROSS] - book[T_FEES]
    acc[A_N_TRADES] += 1.0
    acc[A_SUM_PNL] += pnl
    if pnl > 0.0:
        acc[A_WINS] += 1.0
        acc[A_GROSS_WIN] += pnl
    elif pnl < 0.0:
        acc[A_GROSS_LOSS] += pnl
    if store:
        entry_px = book[T_ENTRY_VALUE] / book[T_QTY]
        exit_px = book[T_EXIT_VALUE] / book[T_EXIT_QTY]
        row = _floats((book[T_ENTRY_IDX], t, side, book[T_QTY], entry_px, exit_px, pnl,
                       book[T_FEES], reason, held, 0.0))  # fmt: skip
        k = int(book[T_CLOSED])
        for j in range(N_COLS):
            closed[k, j] = row[j]
        book[T_CLOSED] = k + 1
    return cash, 0.0


@njit(cache=True)
def _levels(avg, s, sl, tp_pct, tp_r):
    """Stop and take-profit from the average entry (n1v1.risk.exits.exit_levels); NaN = none."""
    stop = avg * (1.0 - s * sl)
    tp = avg * (1.0 + s * tp_pct) if tp_r != tp_r else avg + s * tp_r * abs(avg - stop)
    return stop, tp


@njit(cache=True)
def _fill_exit(
    acc, book, closed, store, cash, t, raw, side, order_qty, filled, cap, vol, lot, taker, slip,
    reason, qty, avg, held,
):  # fmt: skip
    """Fill the working market exit at `raw` (with slippage) up to the cap (the venue's
    `_fill_market`). Returns (cash, qty held, order qty (0: done), filled)."""
    q = _tradable(order_qty - filled, cap, vol, lot)
    if q <= 0.0:
        return cash, qty, order_qty, filled
    px = raw * (1.0 - side * slip)
    cash, qty = _reduce(
        acc, book, closed, store, cash, t, px, q, side, taker, reason, qty, avg, held
    )
    filled += q
    if order_qty - filled <= order_qty * _DONE_TOLERANCE:
        order_qty = 0.0
    return cash, qty, order_qty, filled


@njit(cache=True)
def _fill_entry(
    acc, book, cash, t, raw, s, order_qty, filled, cap, vol, lot, taker, slip, qty, avg
):
    """Fill the working market entry at `raw` (with slippage) up to the cap; a buy is cut to what
    cash pays for (no borrowing) and the unaffordable rest dropped. Returns (cash, qty held,
    average entry, order side (0: done or cancelled), order qty, filled, filled now?)."""
    q = _tradable(order_qty - filled, cap, vol, lot)
    if q <= 0.0:
        return cash, qty, avg, s, order_qty, filled, False
    px = raw * (1.0 + s * slip)
    if s > 0:
        affordable = max(cash, 0.0) / (px * (1.0 + taker))
        if affordable < q:
            q = _lot_floor(affordable, lot)  # rule insufficient_cash
            if q <= 0.0:
                acc[A_REJECTED] += 1.0
                return cash, qty, avg, 0, order_qty, filled, False
            order_qty = filled + q
    cash, qty, avg = _add(acc, book, cash, t, px, q, s, taker, qty, avg)
    filled += q
    if order_qty - filled <= order_qty * _DONE_TOLERANCE:
        s = 0
    return cash, qty, avg, s, order_qty, filled, True


@njit(cache=True)
def run_kernel(
    open_, high, low, close, volume, targets,
    cash0, taker, maker, slip, fill_close, qty_fixed, fraction, lot, min_notional,
    sl, tp_pct, tp_r, trail, time_exit, allow_short, cap, limit_through, close_at_end,
    rf_bar, store,
):  # fmt: skip
    """Simulate one symbol bar by bar (docs/execution.md, "The order of events in one bar").

    The decision state mirrors the engine: `intended` is the direction being traded towards
    (position plus working orders), `blocked` the direction not re-entered after a protective or
    time exit until the target differs from it. Working market orders are at most an exit and,
    queued behind it, an entry; under a participation cap (`cap`, NaN = none; `volume` is read
    only then) each fills at most cap x bar volume per bar and the rest keeps working, and so do
    the stop and take-profit, which protect whatever is still held.
    """
    n = open_.shape[0]
    m = n if store else 0
    equity, position, cash_out = np.empty(m), np.empty(m), np.empty(m)
    trades = np.empty((64 if store else 1, N_COLS))
    acc = np.zeros(ACC_SIZE)
    book = np.zeros(T_SIZE)
    closed = np.empty((_MAX_CLOSED_PER_BAR if store else 1, N_COLS))
    has_sl, has_trail, has_time, has_cap = sl == sl, trail == trail, time_exit > 0, cap == cap
    cash, side, qty, avg = cash0, 0, 0.0, 0.0  # side: +1 long, -1 short, 0 flat; qty > 0
    held = 0
    protected, stop, tp, extreme = False, np.nan, np.nan, 0.0  # stop/take-profit working?
    intended, blocked = 0, 0
    x_qty, x_filled, x_reason = 0.0, 0.0, 0  # working market exit (x_qty > 0)
    e_side, e_qty, e_filled = 0, 0.0, 0.0  # working market entry (e_side != 0)
    prev_eq, peak_eq, min_eq, max_dd = cash0, cash0, cash0, 0.0
    s_r, s_r2, s_d2, s_eq, min_r, max_r, exposure = 0.0, 0.0, 0.0, 0.0, np.inf, -np.inf, 0
    entry_cost = 1.0 + (taker + slip)
    for t in range(n):
        o, h, lo, c = open_[t], high[t], low[t], close[t]
        vol = volume[t] if has_cap else 0.0
        # 1. working market orders fill at this open, first in first out: the exit, then the
        # entry (a reversal's entry waits until its exit is done)
        if x_qty > 0.0:
            cash, qty, x_qty, x_filled = _fill_exit(
                acc, book, closed, store, cash, t, o, side, x_qty, x_filled, cap, vol, lot,
                taker, slip, x_reason, qty, avg, held,
            )  # fmt: skip
            if qty == 0.0:
                side, avg, held = 0, 0.0, 0
        if x_qty == 0.0 and e_side != 0:
            s = e_side
            cash, qty, avg, e_side, e_qty, e_filled, filled = _fill_entry(
                acc, book, cash, t, o, s, e_qty, e_filled, cap, vol, lot, taker, slip, qty, avg
            )
            if filled:  # (re)place the protective levels from the new average entry
                if side == 0:
                    side, held = s, 0
                stop, tp = _levels(avg, side, sl, tp_pct, tp_r)
                extreme, protected = avg, True
        # 2. stops, trailing stops and take-profits against this bar's range (a position opened
        # at this open is checked; one opened at this bar's close under fill=close is not open yet)
        if side != 0:
            if protected:
                level, reason = stop, _STOP
                if has_trail:
                    tl = extreme * (1.0 - side * trail)
                    if not has_sl or (side > 0 and tl > stop) or (side < 0 and tl < stop):
                        level, reason = tl, _TRAIL
                px, fee_rate, q = np.nan, taker, 0.0
                if (lo <= level) if side > 0 else (h >= level):  # the stop is touched
                    q = _tradable(qty, cap, vol, lot)
                    if q > 0.0:
                        gapped = o <= level if side > 0 else o >= level
                        px = (o if gapped else level) * (1.0 - side * slip)
                if q == 0.0 and tp == tp:  # else the limit; no slippage, maker fee
                    if side > 0:
                        touched = h > tp if limit_through else h >= tp
                    else:
                        touched = lo < tp if limit_through else lo <= tp
                    if touched:
                        q = _tradable(qty, cap, vol, lot)
                        if q > 0.0:  # the open when it gapped beyond the level
                            px = max(o, tp) if side > 0 else min(o, tp)
                            fee_rate, reason = maker, _TP
                if q > 0.0:
                    cash, qty = _reduce(
                        acc, book, closed, store, cash, t, px, q, side, fee_rate, reason, qty,
                        avg, held,
                    )  # fmt: skip
                    # even a partial fill ends the position: no re-entry, no more entry fills
                    blocked, intended, e_side = side, 0, 0
                    if qty == 0.0:
                        side, avg, held, protected = 0, 0.0, 0, False
            if side != 0:
                if has_trail:  # this bar's extreme counts only after its own check
                    extreme = max(extreme, h) if side > 0 else min(extreme, lo)
                held += 1
        # 3. mark to the close: E_t, the equity orders decided at this close are sized from
        eq_mark = cash + side * qty * c
        # 5. time exit after `time_exit` bars held (the entry bar counts when entered at its open)
        if has_time and side != 0 and intended != 0 and held >= time_exit:
            blocked, intended, protected, e_side = side, 0, False, 0
            x_qty, x_filled, x_reason = qty, 0.0, _TIME
            if fill_close:
                cash, qty, x_qty, x_filled = _fill_exit(
                    acc, book, closed, store, cash, t, c, side, x_qty, x_filled, cap, vol, lot,
                    taker, slip, _TIME, qty, avg, held,
                )  # fmt: skip
                if qty == 0.0:
                    side, avg, held = 0, 0.0, 0
        # 6. targets at the close -> orders (filled now under `close`, at t+1's open otherwise)
        desired = targets[t]
        if desired < 0 and not allow_short:
            desired = 0
        if blocked != 0 and desired != blocked:
            blocked = 0
        if blocked != 0 and desired == blocked:
            desired = 0
        if desired != intended:
            x_qty, e_side = 0.0, 0  # working market orders were meant for the old course
            if side != 0 and side == desired:
                intended = desired
                if not protected:  # e.g. the rest of a partly filled exit: protect it again
                    stop, tp = _levels(avg, side, sl, tp_pct, tp_r)
                    extreme, protected = avg, True
            else:
                if side != 0:  # close the position: one order, a reversal adds a second
                    protected = False
                    x_qty, x_filled, x_reason = qty, 0.0, _SIGNAL
                    if fill_close:
                        cash, qty, x_qty, x_filled = _fill_exit(
                            acc, book, closed, store, cash, t, c, side, x_qty, x_filled, cap,
                            vol, lot, taker, slip, _SIGNAL, qty, avg, held,
                        )  # fmt: skip
                        if qty == 0.0:
                            side, avg, held = 0, 0.0, 0
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
                        e_side, e_qty, e_filled = desired, q, 0.0
                        if fill_close and x_qty == 0.0:  # not queued behind an exit remainder
                            cash, qty, avg, e_side, e_qty, e_filled, filled = _fill_entry(
                                acc, book, cash, t, c, desired, e_qty, e_filled, cap, vol, lot,
                                taker, slip, qty, avg,
                            )  # fmt: skip
                            if filled:
                                side, held = desired, 0
                                stop, tp = _levels(avg, side, sl, tp_pct, tp_r)
                                extreme, protected = avg, True
        if t + 1 == n:  # orders still working at the last bar expire
            x_qty, e_side = 0.0, 0
            if close_at_end and side != 0:  # the whole position at the last close, no cap
                cash, qty, _, _ = _fill_exit(
                    acc, book, closed, store, cash, t, c, side, qty, 0.0, np.nan, vol, lot,
                    taker, slip, _END, qty, avg, held,
                )  # fmt: skip
                side, avg, held, protected = 0, 0.0, 0, False
        if store and book[T_CLOSED] > 0.0:
            trades = _store_closed(trades, acc, closed, book)
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
    if store and side != 0:  # the trade still open, marked at the last close like the portfolio
        c = close[n - 1]
        pnl = book[T_GROSS] + (c - avg) * (side * qty) - book[T_FEES]
        entry_px = book[T_ENTRY_VALUE] / book[T_QTY]
        row = (book[T_ENTRY_IDX], -1, side, book[T_QTY], entry_px, np.nan, pnl, book[T_FEES],
               _OPEN, 0, qty)  # fmt: skip
        trades = _store_trade(trades, acc, _floats(row))
    return equity, position, cash_out, trades, acc
