"""Known-answer scenarios for the TradingEngine, every fill, fee and balance worked out by hand.

Conventions (docs/execution.md): a target read at a bar's close trades at the next bar's open
(`next_open`) or at that close (`close`); bars below are (open, high, low, close[, volume]); cash
starts at 10,000; fees are zero unless a scenario sets them.
"""

from __future__ import annotations

import pandas as pd
import pytest
from builders import FixedTargets, make_bars, run_engine, settings

from n1v1.backtest.runner import BacktestError, fast_path_unsupported, run_backtest
from n1v1.domain import OrderPurpose, OrderStatus, Side
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.signals import PrecomputedTargets

FIXED_10 = {"sizing": "fixed", "qty": 10.0}
approx = pytest.approx


def closed(engine: TradingEngine):
    return engine.portfolio.closed_trades


def rules(engine: TradingEngine) -> list[tuple[str, str]]:
    return [(d.rule, d.action) for d in engine.journal.risk_decisions]


ROUND_TRIP = make_bars(
    [
        (100, 101, 99, 100),
        (101, 103, 100, 102),
        (102, 104, 101, 103),
        (103, 106, 102, 105),
        (104, 105, 103, 104),
    ]
)


def test_long_round_trip_next_open_pays_fees_on_both_legs():
    fees = {"maker_fee": 0.001, "taker_fee": 0.001}
    engine = run_engine(ROUND_TRIP, [1, 1, 1, 0, 0], settings(execution=fees, risk=FIXED_10))
    # entry: decided at bar 0's close, filled at bar 1's open 101: 10 x 101 = 1010, fee 1.01
    # exit: decided at bar 3's close (target 0), filled at bar 4's open 104: 1040, fee 1.04
    (trade,) = closed(engine)
    assert (trade.entry_price, trade.exit_price) == (101, 104)
    assert trade.fees == approx(1.01 + 1.04)
    assert trade.pnl == approx(30 - 2.05)  # (104 - 101) x 10 - fees = 27.95
    # equity at each close: cash 10000 - 1010 - 1.01 = 8988.99 plus 10 x close
    assert engine.equity_series().tolist() == approx(
        [10_000, 8988.99 + 1020, 8988.99 + 1030, 8988.99 + 1050, 10_027.95]
    )
    assert engine.portfolio.fees_paid == approx(2.05)


def test_close_fill_trades_at_the_signal_bars_close():
    fees = {"maker_fee": 0.001, "taker_fee": 0.001, "fill": "close"}
    engine = run_engine(ROUND_TRIP, [1, 1, 1, 0, 0], settings(execution=fees, risk=FIXED_10))
    # entry at bar 0's close 100 (fee 1.00), exit at bar 3's close 105 (fee 1.05)
    (trade,) = closed(engine)
    assert (trade.entry_price, trade.exit_price) == (100, 105)
    assert trade.pnl == approx(50 - 2.05)
    assert engine.portfolio.equity == approx(10_047.95)
    assert trade.entry_time == ROUND_TRIP.index[0] and trade.exit_time == ROUND_TRIP.index[3]


def test_fixed_slippage_moves_both_fills_against_us():
    ex = {"maker_fee": 0.001, "taker_fee": 0.001, "slippage_bps": 10}
    engine = run_engine(ROUND_TRIP, [1, 1, 1, 0, 0], settings(execution=ex, risk=FIXED_10))
    (trade,) = closed(engine)
    # buy at 101 x 1.001 = 101.101; sell at 104 x 0.999 = 103.896
    assert trade.entry_price == approx(101.101)
    assert trade.exit_price == approx(103.896)
    # fees 0.1% of 1011.01 and of 1038.96 = 1.01101 + 1.03896
    assert trade.fees == approx(1.01101 + 1.03896)
    assert trade.pnl == approx(27.95 - 2.04997)  # (103.896 - 101.101) x 10 = 27.95
    assert engine.portfolio.equity == approx(10_025.90003)


STOP_BARS = [(100, 100, 100, 100), (100, 101, 99, 100)]


def test_stop_loss_fills_at_the_stop_price():
    bars = make_bars([*STOP_BARS, (99, 99.5, 94, 96), (96, 97, 95, 96)])
    engine = run_engine(bars, [1, 1, 1, 1], settings(risk={**FIXED_10, "stop_loss_pct": 0.05}))
    # entry at 100 (bar 1 open); stop 95; bar 2 trades down to 94 from an open of 99 -> fill at 95
    (trade,) = closed(engine)
    assert trade.exit_price == 95 and trade.exit_reason == "stop_loss"
    assert trade.pnl == approx(-50)
    assert trade.exit_time == bars.index[2]
    # the target is still long, but a stopped-out long waits for the target to change
    assert engine.portfolio.equity == approx(9_950)
    assert len(engine.portfolio.closed_trades) == 1 and not engine.portfolio.open_positions()


def test_gap_through_the_stop_fills_at_the_open():
    bars = make_bars([*STOP_BARS, (90, 92, 89, 91), (91, 92, 90, 91)])
    engine = run_engine(bars, [1, 1, 1, 1], settings(risk={**FIXED_10, "stop_loss_pct": 0.05}))
    (trade,) = closed(engine)
    assert trade.exit_price == 90  # opened below the 95 stop: no fill at 95 was possible
    assert trade.pnl == approx(-100)


def test_take_profit_fills_at_its_price_with_the_maker_fee():
    ex = {"maker_fee": 0.0005, "taker_fee": 0.001}
    bars = make_bars([*STOP_BARS, (105, 112, 104, 111), (111, 112, 110, 111)])
    engine = run_engine(
        bars, [1, 1, 1, 1], settings(execution=ex, risk={**FIXED_10, "take_profit_pct": 0.10})
    )
    (trade,) = closed(engine)
    # entry 100 (taker fee 1000 x 0.001 = 1.00); take-profit 110 reached by the high 112
    assert trade.exit_price == approx(110) and trade.exit_reason == "take_profit"
    assert trade.fees == approx(1.0 + 1100 * 0.0005)  # maker fee 0.55
    assert trade.pnl == approx(100 - 1.55)


def test_take_profit_gapped_through_fills_at_the_better_open():
    ex = {"maker_fee": 0.0005, "taker_fee": 0.001}
    bars = make_bars([*STOP_BARS, (115, 116, 113, 114), (114, 115, 113, 114)])
    engine = run_engine(
        bars, [1, 1, 1, 1], settings(execution=ex, risk={**FIXED_10, "take_profit_pct": 0.10})
    )
    (trade,) = closed(engine)
    assert trade.exit_price == 115
    assert trade.pnl == approx(150 - 1.0 - 1150 * 0.0005)  # 148.425


def test_stop_and_take_profit_in_one_bar_assumes_the_stop_first():
    bars = make_bars([*STOP_BARS, (100, 112, 94, 105), (105, 106, 104, 105)])
    risk = {**FIXED_10, "stop_loss_pct": 0.05, "take_profit_pct": 0.10}
    engine = run_engine(bars, [1, 1, 1, 1], settings(risk=risk))
    (trade,) = closed(engine)
    assert trade.exit_reason == "stop_loss" and trade.exit_price == 95
    statuses = {o.purpose: o.status for o in engine.journal.latest_orders().values()}
    assert statuses[OrderPurpose.TAKE_PROFIT] is OrderStatus.CANCELLED  # its OCO sibling filled


def test_trailing_stop_follows_the_high_of_earlier_bars_only():
    bars = make_bars(
        [
            (100, 100, 100, 100),
            (100, 105, 99, 104),  # entry at 100; stop 90; after the bar: peak 105 -> stop 94.5
            (104, 120, 100, 118),  # low 100 > 94.5; after the bar: peak 120 -> stop 108
            (117, 118, 107, 110),  # low 107 <= 108 -> fill at 108
            (110, 111, 109, 110),
        ]
    )
    engine = run_engine(bars, [1] * 5, settings(risk={**FIXED_10, "trailing_stop_pct": 0.10}))
    (trade,) = closed(engine)
    # Had bar 2's own high (120) moved the stop to 108 before its low (100) was checked, the
    # trade would have closed in bar 2: we never assume the high came first.
    assert trade.exit_time == bars.index[3]
    assert trade.exit_price == approx(108) and trade.exit_reason == "trailing_stop"
    assert trade.pnl == approx(80)


def test_time_exit_closes_after_n_bars_and_does_not_reenter():
    bars = make_bars(
        [
            (100, 100, 100, 100),
            (100, 101, 99, 101),
            (101, 102, 100, 102),
            (103, 104, 102, 103),
            (103, 104, 102, 103),
        ]
    )
    engine = run_engine(bars, [1] * 5, settings(risk={**FIXED_10, "time_exit_bars": 2}))
    # entry at bar 1's open (bar 1 is held bar 1, bar 2 is held bar 2) -> exit decided at bar 2's
    # close, filled at bar 3's open 103
    (trade,) = closed(engine)
    assert trade.exit_reason == "time_exit" and trade.exit_price == 103
    assert trade.bars_held == 2 and trade.pnl == approx(30)
    assert engine.portfolio.equity == approx(10_030)


def test_participation_cap_splits_fills_across_bars():
    bars = make_bars(
        [
            (100, 100, 100, 100, 50),
            (100, 101, 99, 100, 50),
            (102, 103, 101, 102, 50),
            (103, 104, 102, 104, 50),
            (105, 106, 104, 105, 50),
            (106, 107, 105, 106, 50),
        ]
    )
    engine = run_engine(
        bars,
        [1, 1, 1, 0, 0, 0],
        settings(execution={"participation_cap": 0.1}, risk=FIXED_10),
    )
    # 10% of a 50-unit bar = 5 per bar: entry 5 @ 100 + 5 @ 102 (avg 101), exit 5 @ 105 + 5 @ 106
    (trade,) = closed(engine)
    assert trade.entry_price == approx(101) and trade.exit_price == approx(105.5)
    assert trade.pnl == approx(45)
    assert [f.qty for f in engine.journal.fills] == [5, 5, 5, 5]
    entry_id = engine.journal.fills[0].client_order_id
    history = [o.status for o in engine.journal.orders if o.client_order_id == entry_id]
    assert history == [
        OrderStatus.NEW,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.FILLED,
    ]


# t0 target 1 -> buy 10 at t1's open 100 (cap 0.1 x 1000 = 100 units: one fill); t1 target 0 ->
# the exit sells at most 0.1 x 20 = 2 units per bar: 2 @ 120 at t2, t3 and t4; the data ends at
# t4's close 130 with 4 units still held.
PARTIAL_EXIT_BARS = make_bars(
    [
        (100, 100, 100, 100, 1000),
        (100, 101, 99, 100, 1000),
        (120, 121, 119, 120, 20),
        (120, 121, 119, 120, 20),
        (120, 131, 119, 130, 20),
    ]
)


@pytest.mark.parametrize("fee", [0.0, 0.001])
@pytest.mark.parametrize("path", ["event", "fast"])
def test_open_trade_after_partial_exits_shows_what_is_left_and_the_profit_taken(path, fee):
    config = settings(
        execution={"participation_cap": 0.1, "taker_fee": fee, "maker_fee": fee}, risk=FIXED_10
    )
    result = run_backtest(PARTIAL_EXIT_BARS, FixedTargets([1, 0, 0, 0, 0]), config, engine=path)
    assert result.engine == path
    (trade,) = result.trades
    # realised 3 x 2 x (120 - 100) = 120, plus the 4 left marked at 130: 4 x 30 = 120 -> 240,
    # less every fee paid: the buy (10 x 100) and the three sales (6 x 120) x fee = 1720 x fee.
    # Marking all 10 entered units at 130 and ignoring the sales would say 300.
    assert trade.pnl == approx(240 - 1720 * fee)
    assert trade.exit_time is None and trade.qty == 10 and trade.open_qty == 4
    assert trade.entry_price == 100
    assert trade.fees == approx(1720 * fee)
    assert result.trades[0].to_dict()["open_qty"] == 4
    # cash 10000 - 1000 + 720 - fees, plus 4 x 130
    assert result.equity.iloc[-1] == approx(10_000 + 240 - 1720 * fee)
    if path == "event":
        assert [f.qty for f in result.journal.fills] == [10, 2, 2, 2]


# t1 buy 10 @ 100; stop 95 and take-profit 110 (OCO); the cap 0.5 x volume limits every fill
CAPPED_EXIT_BARS = make_bars(
    [
        (100, 100, 100, 100, 1000),
        (100, 101, 99, 100, 1000),
        (96, 97, 94, 95, 4),  # low 94 <= 95: the stop sells 0.5 x 4 = 2 @ 95, 8 left
        (96, 99, 95.5, 98, 4),  # neither level reached: nothing
        (93, 94, 92, 93, 4),  # opened below the stop: 2 @ the open 93, 6 left
        (111, 112, 110.5, 111, 6),  # opened above the take-profit: 3 @ the open 111, 3 left
        (109, 111, 108, 110, 100),  # high 111 >= 110: the last 3 @ 110
    ]
)


def test_participation_cap_applies_to_stops_and_take_profits():
    ex = {"participation_cap": 0.5, "maker_fee": 0.0005, "taker_fee": 0.001}
    risk = {**FIXED_10, "stop_loss_pct": 0.05, "take_profit_pct": 0.10}
    engine = run_engine(CAPPED_EXIT_BARS, [1] * 7, settings(execution=ex, risk=risk))
    fills = engine.journal.fills
    assert [(f.purpose, f.qty) for f in fills] == [
        (OrderPurpose.ENTRY, 10),
        (OrderPurpose.STOP_LOSS, 2),
        (OrderPurpose.STOP_LOSS, 2),
        (OrderPurpose.TAKE_PROFIT, 3),
        (OrderPurpose.TAKE_PROFIT, 3),
    ]
    assert [f.price for f in fills] == approx([100, 95, 93, 111, 110])
    (trade,) = closed(engine)
    # pnl 2 x (95 - 100) + 2 x (93 - 100) + 3 x (111 - 100) + 3 x (110 - 100) = 39, less fees:
    # taker 0.001 x (1000 + 190 + 186) = 1.376, maker 0.0005 x (333 + 330) = 0.3315
    assert trade.pnl == approx(39 - 1.376 - 0.3315)
    assert trade.exit_price == approx((190 + 186 + 333 + 330) / 10)
    assert trade.exit_reason == "take_profit" and trade.exit_time == CAPPED_EXIT_BARS.index[6]
    # the take-profit protected only what the stop had left (10 -> 8 -> 6), then the stop only
    # what the take-profit had left; the one that finished cancelled the other
    tp_id = fills[3].client_order_id
    tp_qty = [o.qty for o in engine.journal.orders if o.client_order_id == tp_id]
    assert sorted(set(tp_qty), reverse=True) == [10, 8, 6]
    stop = engine.journal.latest_orders()[fills[1].client_order_id]
    assert stop.status is OrderStatus.CANCELLED and stop.filled_qty == 4 and stop.qty == 7
    # equity after t2: cash 10000 - 1000 - 1 + 190 - 0.19 = 9188.81, plus 8 x 95
    assert engine.equity_series().iloc[2] == approx(9188.81 + 760)
    assert engine.portfolio.equity == approx(10_000 + 39 - 1.376 - 0.3315)


def test_take_profit_through_needs_the_bar_to_trade_beyond_the_level():
    bars = make_bars(
        [*STOP_BARS, (105, 125, 104, 120), (120, 125.5, 119, 124), (124, 126, 123, 125)]
    )
    risk = {**FIXED_10, "take_profit_pct": 0.25}
    touch = run_engine(bars, [1] * 5, settings(risk=risk))
    through = run_engine(bars, [1] * 5, settings(execution={"limit_fill": "through"}, risk=risk))
    # take-profit 100 x 1.25 = 125 (exact in binary): bar 2's high is exactly 125 -> filled when
    # touching is enough; under `through` only bar 3 (high 125.5 > 125) fills it, at 125
    assert closed(touch)[0].exit_time == bars.index[2]
    (trade,) = closed(through)
    assert trade.exit_time == bars.index[3] and trade.exit_price == 125
    assert trade.pnl == 250


def test_close_at_end_sells_what_is_left_at_the_last_close():
    ex = {"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 10}
    config = settings(execution=ex, risk=FIXED_10, backtest={"close_at_end": True})
    engine = run_engine(ROUND_TRIP, [1] * 5, config)
    (trade,) = closed(engine)
    # buy 10 @ 101 x 1.001 = 101.101 (fee 1.01101); the end sells them at the last close 104 x
    # 0.999 = 103.896 (fee 1.03896): pnl 27.95 - 2.04997, the same as a signal exit there
    assert trade.exit_reason == "end_of_data" and trade.exit_time == ROUND_TRIP.index[4]
    assert trade.exit_price == approx(103.896) and trade.pnl == approx(27.95 - 2.04997)
    assert trade.bars_held == 4  # bars 1..4, the entry bar counted (filled at its open)
    assert engine.equity_series().iloc[-1] == approx(10_025.90003)
    assert engine.portfolio.open_positions() == [] and engine.exposure_bars == 3
    assert engine.journal.equity[-1].equity == approx(10_025.90003)


def test_order_below_min_notional_is_rejected_with_the_rule():
    spec = {"default_instrument": {"min_notional": 1000}}
    engine = run_engine(
        ROUND_TRIP, [1, 1, 1, 0, 0], settings(execution=spec, risk={"sizing": "fixed", "qty": 5})
    )
    # 5 x 100 = 500 < 1000 at every decision; nothing is ever submitted
    assert engine.journal.orders == [] and engine.journal.fills == []
    assert ("min_notional", "reject") in rules(engine)
    assert "500.00 below minimum 1000" in engine.journal.risk_decisions[0].reason


SHORT_BARS = make_bars(
    [(100, 100, 100, 100), (100, 101, 97, 98), (98, 99, 95, 95), (95, 96, 91, 92), (90, 91, 89, 90)]
)


def test_short_round_trip_credits_proceeds_and_pays_fees_both_ways():
    ex = {"maker_fee": 0.001, "taker_fee": 0.001}
    engine = run_engine(
        SHORT_BARS,
        [-1, -1, -1, 0, 0],
        settings(execution=ex, risk={**FIXED_10, "allow_short": True}),
    )
    # short 10 @ 100: cash 10000 + 1000 - 1.00 = 10999; cover @ 90 (bar 4 open): -900 - 0.90
    (trade,) = closed(engine)
    assert trade.side is Side.SELL and (trade.entry_price, trade.exit_price) == (100, 90)
    assert trade.pnl == approx(100 - 1.9)
    # bar 2 equity: cash 10999 + (-10 x 95) = 10049
    assert engine.equity_series().iloc[2] == approx(10_049)
    assert engine.portfolio.cash == approx(10_098.1)


def test_long_only_mode_ignores_short_targets():
    engine = run_engine(SHORT_BARS, [-1, -1, -1, 0, 0], settings(risk=FIXED_10))
    assert engine.journal.orders == []
    assert engine.portfolio.equity == 10_000


def test_reversal_closes_then_opens_as_two_trades():
    bars = make_bars(
        [
            (100, 100, 100, 100),
            (100, 102, 99, 101),
            (102, 105, 101, 104),
            (105, 106, 102, 103),
            (102, 103, 99, 100),
            (99, 100, 98, 99),
        ]
    )
    engine = run_engine(
        bars, [1, 1, -1, -1, 0, 0], settings(risk={**FIXED_10, "allow_short": True})
    )
    long_trade, short_trade = closed(engine)
    # long 100 -> 105 at bar 3's open (+50); short 105 at the same open -> covered at 99 (+60)
    assert (long_trade.side, long_trade.entry_price, long_trade.exit_price) == (Side.BUY, 100, 105)
    assert (short_trade.side, short_trade.entry_price, short_trade.exit_price) == (
        Side.SELL,
        105,
        99,
    )
    assert long_trade.pnl == approx(50) and short_trade.pnl == approx(60)
    assert engine.portfolio.equity == approx(10_110)
    assert [f.purpose for f in engine.journal.fills] == [
        OrderPurpose.ENTRY,
        OrderPurpose.EXIT,
        OrderPurpose.ENTRY,
        OrderPurpose.EXIT,
    ]


def test_two_symbols_share_one_cash_balance():
    a = make_bars([(100, 100, 100, 100), (100, 111, 99, 110), (120, 121, 119, 120)])
    b = make_bars([(50, 50, 50, 50), (50, 51, 44, 45), (48, 49, 47, 48)])
    engine = run_engine(
        {"A": a, "B": b}, {"A": [1, 0, 0], "B": [1, 0, 0]}, settings(risk={"fraction": 0.5})
    )
    # both sized from the same equity at bar 0's close: A 0.5 x 10000 / 100 = 50, B 5000/50 = 100
    # both fill at bar 1's open, spending all 10,000 of cash
    assert [f.qty for f in engine.journal.fills[:2]] == approx([50, 100])
    assert engine.equity_series().iloc[1] == approx(0 + 50 * 110 + 100 * 45)
    # exits at bar 2's opens: A +20 x 50 = +1000, B -2 x 100 = -200
    trade_a, trade_b = closed(engine)
    assert (trade_a.pnl, trade_b.pnl) == approx((1000, -200))
    assert engine.portfolio.equity == approx(10_800)


def test_buy_larger_than_cash_after_a_gap_is_cut_to_what_cash_pays():
    bars = make_bars([(100, 100, 100, 100), (110, 111, 109, 110), (110, 111, 109, 110)])
    engine = run_engine(bars, [1, 1, 1], settings(risk={"fraction": 1.0}))
    # sized at 10000 / 100 = 100 units, but the open gapped to 110: cash pays 10000/110 = 90.909...
    (fill,) = engine.journal.fills
    assert fill.qty == approx(10_000 / 110)
    assert ("insufficient_cash", "resize") in rules(engine)
    assert engine.portfolio.cash == approx(0, abs=1e-9)


def test_quantities_round_down_to_the_lot_size():
    bars = make_bars([(330, 330, 330, 330), (330, 331, 329, 330), (330, 331, 329, 330)])
    ex = {"maker_fee": 0.001, "taker_fee": 0.001, "default_instrument": {"lot_size": 0.1}}
    engine = run_engine(bars, [1, 1, 1], settings(execution=ex))
    # fraction 1: 10000 / (330 x 1.001) = 30.2728... -> 30.2 lots of 0.1
    (fill,) = engine.journal.fills
    assert fill.qty == approx(30.2)
    assert engine.portfolio.cash == approx(10_000 - 30.2 * 330 * 1.001)  # 24.034


def test_max_open_positions_counts_entries_still_on_their_way():
    a = make_bars([(100, 100, 100, 100)] * 3)
    b = make_bars([(50, 50, 50, 50)] * 3)
    risk = {**FIXED_10, "max_open_positions": 1}
    engine = run_engine({"A": a, "B": b}, {"A": [1, 1, 1], "B": [1, 1, 1]}, settings(risk=risk))
    # A's entry is only a working order at bar 0's close, yet it takes the one slot
    assert {f.symbol for f in engine.journal.fills} == {"A"}
    assert ("max_open_positions", "reject") in rules(engine)


def test_symbol_exposure_limit_resizes_the_entry():
    risk = {"fraction": 1.0, "max_symbol_exposure": 0.25}
    engine = run_engine(ROUND_TRIP, [1, 1, 1, 1, 1], settings(risk=risk))
    # wanted 10000/100 = 100 units; 25% of 10000 = 2500 at 100 -> 25 units
    assert engine.journal.fills[0].qty == approx(25)
    assert ("max_symbol_exposure", "resize") in rules(engine)


def test_circuit_breaker_halts_new_entries_after_the_drawdown_limit():
    bars = make_bars(
        [
            (100, 100, 100, 100),
            (100, 100, 93, 94),
            (94, 95, 93, 95),
            (95, 96, 94, 96),
            (96, 97, 95, 97),
        ]
    )
    risk = {"sizing": "fixed", "qty": 100, "max_drawdown": 0.05}
    engine = run_engine(bars, [1, 1, 0, 1, 1], settings(risk=risk))
    # 100 units from 100 to 94: equity 9400, 6% below the 10000 peak -> tripped at bar 1
    # the exit still goes through (bar 3's open 95: -500); the new long at bar 3 is refused
    assert ("circuit_breaker", "halt") in rules(engine)
    assert ("circuit_breaker", "reject") in rules(engine)
    (trade,) = closed(engine)
    assert trade.pnl == approx(-500)
    assert engine.portfolio.equity == approx(9_500)


BREACH_BARS = make_bars(
    [
        (100, 100, 100, 100),
        (100, 100, 93, 94),
        (94, 95, 93, 95),
        (95, 96, 94, 96),
        (96, 97, 95, 97),
    ]
)


@pytest.mark.parametrize("limit", ["max_drawdown", "max_daily_loss"])
def test_flatten_on_breach_closes_everything_when_a_limit_trips(limit):
    risk = {"sizing": "fixed", "qty": 100, limit: 0.05, "flatten_on_breach": True}
    engine = run_engine(BREACH_BARS, [1, 1, 1, 1, 1], settings(risk=risk))
    # 100 units bought at bar 1's open 100 (cash 0); bar 1 closes at 94: equity 9,400 is 6% below
    # the peak (and the day's start) of 10,000 -> tripped; the flattening sell decided at that
    # close fills at bar 2's open 94: -600, and the account stays in cash at 9,400
    rule = "circuit_breaker" if limit == "max_drawdown" else limit
    assert (rule, "halt") in rules(engine) and (rule, "flatten") in rules(engine)
    (trade,) = closed(engine)
    assert trade.exit_reason == "risk_flatten" and trade.exit_price == 94
    assert trade.pnl == approx(-600)
    assert engine.equity_series().tolist() == approx([10_000, 9_400, 9_400, 9_400, 9_400])
    # the unchanged long target neither cancels the flattening order nor re-enters
    assert [f.purpose for f in engine.journal.fills] == [
        OrderPurpose.ENTRY,
        OrderPurpose.RISK_FLATTEN,
    ]


def test_without_flatten_on_breach_the_breaker_only_refuses_new_entries():
    risk = {"sizing": "fixed", "qty": 100, "max_drawdown": 0.05}
    engine = run_engine(BREACH_BARS, [1, 1, 1, 1, 1], settings(risk=risk))
    # the long stays open: equity follows the close, 100 x 97 = 9,700 at the end
    assert closed(engine) == []
    assert engine.equity_series().tolist() == approx([10_000, 9_400, 9_500, 9_600, 9_700])


def test_flatten_on_breach_under_close_fills_flattens_at_the_breach_bars_close():
    ex = {"fill": "close"}
    risk = {"sizing": "fixed", "qty": 100, "max_drawdown": 0.05, "flatten_on_breach": True}
    engine = run_engine(BREACH_BARS, [1, 1, 1, 1, 1], settings(execution=ex, risk=risk))
    # bought at bar 0's close 100; tripped at bar 1's close 94 and sold there: -600
    (trade,) = closed(engine)
    assert (trade.exit_time, trade.exit_price) == (BREACH_BARS.index[1], 94)
    assert engine.equity_series().tolist() == approx([10_000, 9_400, 9_400, 9_400, 9_400])


def test_atr_stop_with_an_r_multiple_take_profit():
    bars = make_bars([*STOP_BARS, (101, 111, 100, 110), (110, 111, 109, 110)])
    risk = {**FIXED_10, "atr_stop_multiple": 2.0, "take_profit_r": 2.0}
    engine = TradingEngine(settings(risk=risk))
    engine.add_signal_source(PrecomputedTargets.from_arrays("t", {"BTC": [1, 1, 1, 1]}))
    engine.set_atr("BTC", [2.5, 2.5, 2.5, 2.5])  # ATR at the signal bar = 2.5
    engine.run(ReplayFeed({"BTC": bars}))
    # stop = 100 - 2 x 2.5 = 95; take-profit = 100 + 2 x |100 - 95| = 110, reached in bar 2
    (trade,) = closed(engine)
    assert trade.exit_reason == "take_profit" and trade.exit_price == approx(110)
    stop = next(o for o in engine.journal.orders if o.purpose is OrderPurpose.STOP_LOSS)
    assert stop.price == approx(95)


def test_reentry_after_a_stop_waits_for_the_target_to_change():
    bars = make_bars(
        [*STOP_BARS, (99, 99.5, 94, 96), (96, 97, 95, 96), (96, 97, 95, 96), (97, 98, 96, 97)]
    )
    engine = run_engine(
        bars, [1, 1, 1, 0, 1, 1], settings(risk={**FIXED_10, "stop_loss_pct": 0.05})
    )
    # stopped at bar 2; target 0 at bar 3 re-arms; target 1 at bar 4 -> entry at bar 5's open 97
    (first,) = closed(engine)
    assert first.exit_reason == "stop_loss"
    (still_open,) = engine.portfolio.open_trades()
    assert still_open.entry_time == bars.index[5] and still_open.entry_price == 97


def test_order_decided_on_the_last_bar_expires_unfilled():
    engine = run_engine(ROUND_TRIP, [0, 0, 0, 0, 1], settings(risk=FIXED_10))
    assert engine.journal.fills == []
    (order,) = engine.journal.latest_orders().values()
    assert order.status is OrderStatus.EXPIRED


def test_position_open_at_the_end_is_marked_to_the_last_close():
    engine = run_engine(ROUND_TRIP, [1, 1, 1, 1, 1], settings(risk=FIXED_10))
    (trade,) = engine.trades()
    assert trade.exit_time is None and trade.entry_price == 101
    assert engine.portfolio.equity == approx(10_000 + (104 - 101) * 10)
    assert engine.portfolio.closed_trades == []


def test_kill_switch_flattens_and_refuses_new_entries():
    engine = TradingEngine(settings(risk=FIXED_10))
    engine.add_signal_source(PrecomputedTargets.from_arrays("t", {"BTC": [1, 1, 1, 0, 1]}))
    steps = list(ReplayFeed({"BTC": ROUND_TRIP}))
    for ts, bars in steps[:2]:
        engine.on_bar(ts, bars)
    ts, bars = steps[1]
    engine.kill_switch(ts, "operator", {s: bar for s, (_, bar) in bars.items()})
    for ts, bars in steps[2:]:
        engine.on_bar(ts, bars)
    # long 10 @ 101 (bar 1 open) -> flattened at bar 2's open 102 -> never re-entered
    (trade,) = closed(engine)
    assert trade.exit_reason == "kill_switch" and trade.exit_price == 102
    assert not engine.portfolio.open_positions()
    assert ("kill_switch", "flatten") in rules(engine)
    assert ("kill_switch", "reject") in rules(engine)


def test_kill_switch_reports_what_it_cancelled_flattens_and_placed():
    engine = TradingEngine(settings(risk={**FIXED_10, "stop_loss_pct": 0.05}))
    engine.add_signal_source(PrecomputedTargets.from_arrays("t", {"BTC": [1, 1, 1, 1, 1]}))
    steps = list(ReplayFeed({"BTC": ROUND_TRIP}))
    for ts, bars in steps[:2]:
        engine.on_bar(ts, bars)
    # long 10 @ 101 (bar 1's open) with its stop resting at 101 x 0.95 = 95.95
    (stop,) = engine.venue.working_orders()
    report = engine.kill_switch(steps[1][0], "drill", {})
    assert report.reason == "drill"
    assert [(o.client_order_id, o.status, o.price) for o in report.cancelled] == [
        (stop.client_order_id, OrderStatus.CANCELLED, approx(95.95))
    ]
    # marked at bar 1's close 102: unrealised (102 - 101) x 10 = 10
    assert report.positions == [
        {
            "symbol": "BTC",
            "qty": 10.0,
            "avg_entry": 101.0,
            "last_price": 102.0,
            "unrealized_pnl": 10,
        }
    ]
    ((side, qty, purpose),) = [(o.side, o.qty, o.purpose) for o in report.orders]
    assert (side, qty, purpose) == (Side.SELL, 10.0, OrderPurpose.KILL_SWITCH)


def test_a_kill_switch_order_still_filling_is_not_cancelled_by_unchanged_targets():
    bars = make_bars(
        [
            (100, 100, 100, 100, 50),
            (100, 101, 99, 100, 50),
            (102, 103, 101, 102, 50),
            (103, 104, 102, 104, 50),
            (105, 106, 104, 105, 50),
            (106, 107, 105, 106, 50),
        ]
    )
    engine = TradingEngine(settings(execution={"participation_cap": 0.1}, risk=FIXED_10))
    engine.add_signal_source(PrecomputedTargets.from_arrays("t", {"BTC": [1] * 6}))
    steps = list(ReplayFeed({"BTC": bars}))
    for ts, step in steps[:3]:
        engine.on_bar(ts, step)
    # 10% of 50 = 5 a bar: the entry filled 5 @ 100 and 5 @ 102; the kill switch sells 10
    engine.kill_switch(steps[2][0], "drill", {})
    for ts, step in steps[3:]:
        engine.on_bar(ts, step)
    # 5 @ 103 at bar 3, and the strategy's unchanged long target must not cancel the other 5,
    # which fill @ 105 at bar 4
    assert [(f.qty, f.price) for f in engine.journal.fills] == [
        (5, 100),
        (5, 102),
        (5, 103),
        (5, 105),
    ]
    assert not engine.portfolio.open_positions()
    (trade,) = closed(engine)
    # entries average (100 + 102) / 2 = 101, exits (103 + 105) / 2 = 104: (104 - 101) x 10 = 30
    assert trade.exit_reason == "kill_switch" and trade.pnl == approx(30)


def test_client_order_ids_are_deterministic_and_depend_on_the_run():
    config = settings(risk=FIXED_10)
    ids = [
        [o.client_order_id for o in run_engine(ROUND_TRIP, [1, 1, 1, 0, 0], config).journal.orders]
        for _ in range(2)
    ]
    assert ids[0] == ids[1] and len(set(ids[0])) == 2
    other = settings(risk=FIXED_10, backtest={"run_id": "another-run"})
    other_ids = [
        o.client_order_id for o in run_engine(ROUND_TRIP, [1, 1, 1, 0, 0], other).journal.orders
    ]
    assert set(other_ids).isdisjoint(ids[0])
    assert all(len(i) <= 36 for i in ids[0])


def test_signals_are_journaled_when_the_target_changes():
    engine = run_engine(ROUND_TRIP, [0, 1, 1, 0, 0], settings(risk=FIXED_10))
    assert [(s.timestamp, s.target) for s in engine.journal.signals] == [
        (ROUND_TRIP.index[0], 0),
        (ROUND_TRIP.index[1], 1),
        (ROUND_TRIP.index[3], 0),
    ]


def test_equity_is_cash_plus_positions_at_every_bar():
    engine = run_engine(
        SHORT_BARS, [1, -1, -1, 1, 0], settings(risk={**FIXED_10, "allow_short": True})
    )
    for point in engine.journal.equity:
        assert point.equity == approx(point.cash + point.position_value)
    assert isinstance(engine.equity_series().index, pd.DatetimeIndex)


def test_the_fast_path_refuses_flatten_on_breach_and_auto_runs_the_engine():
    risk = {"sizing": "fixed", "qty": 100, "max_drawdown": 0.05, "flatten_on_breach": True}
    config = settings(risk=risk)
    assert "risk.flatten_on_breach" in fast_path_unsupported(config, {"BTC": BREACH_BARS})
    with pytest.raises(BacktestError, match=r"risk\.flatten_on_breach"):
        run_backtest(BREACH_BARS, FixedTargets([1] * 5), config, engine="fast")
    auto = run_backtest(BREACH_BARS, FixedTargets([1] * 5), config)
    assert auto.engine == "event" and [t.exit_reason for t in auto.trades] == ["risk_flatten"]
