"""Sizing, exit levels, limits, circuit breaker and daily-loss guard, with hand-computed answers."""

from __future__ import annotations

import pandas as pd
import pytest

from n1v1.config import RiskSettings
from n1v1.domain import Side, Symbol, Trade
from n1v1.risk.breaker import CircuitBreaker, DailyLossGuard
from n1v1.risk.exits import exit_levels, trailing_stop
from n1v1.risk.limits import check_portfolio_limits
from n1v1.risk.sizing import kelly_fraction, size_entry

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def trades(pnls: list[float]) -> list[Trade]:
    return [
        Trade(Symbol("A"), Side.BUY, 1, T0, 100, exit_time=T0, exit_price=100, pnl=p) for p in pnls
    ]


def test_fraction_sizing_leaves_room_for_costs():
    r = size_entry(RiskSettings(fraction=0.5), equity=10_000, price=200, cost_rate=0.002, atr=None)
    assert r.qty == pytest.approx(0.5 * 10_000 / (200 * 1.002))  # 24.950...


def test_atr_risk_sizing_risks_the_configured_share_and_is_capped():
    s = RiskSettings(sizing="atr_risk", risk_per_trade=0.01, atr_multiple=2.0, fraction=1.0)
    # risk 1% of 10000 = 100 over a stop 2 x ATR 5 = 10 away -> 10 units (worth 1000 at 100)
    assert size_entry(s, equity=10_000, price=100, cost_rate=0, atr=5).qty == pytest.approx(10)
    # ATR 0.05 would give 1000 units = 100,000 notional: capped at fraction 1 -> 100 units
    capped = size_entry(s, equity=10_000, price=100, cost_rate=0, atr=0.05)
    assert capped.qty == pytest.approx(100) and "capped" in capped.detail
    assert size_entry(s, equity=10_000, price=100, cost_rate=0, atr=float("nan")).qty == 0


def test_kelly_fraction_from_win_rate_and_payoff():
    s = RiskSettings(sizing="kelly", kelly_fraction=0.5, kelly_cap=0.25, kelly_min_trades=4)
    # 3 wins of 20, 1 loss of 10: p = 0.75, b = 20/10 = 2, f* = 0.75 - 0.25/2 = 0.625
    # half Kelly = 0.3125, capped at 0.25
    assert kelly_fraction(trades([20, 20, 20, -10]), s) == pytest.approx(0.25)
    # 2 wins of 10, 2 losses of 10: p = 0.5, b = 1, f* = 0 -> 0
    assert kelly_fraction(trades([10, -10, 10, -10]), s) == 0
    # 1 win of 30, 3 losses of 10: p = .25, b = 3, f* = .25 - .75/3 = 0
    assert kelly_fraction(trades([30, -10, -10, -10]), s) == pytest.approx(0)
    # 3 wins of 10, 1 loss of 10: f* = 0.75 - 0.25 = 0.5, half = 0.25 -> at the cap
    s2 = RiskSettings(sizing="kelly", kelly_fraction=0.4, kelly_cap=0.25, kelly_min_trades=4)
    assert kelly_fraction(trades([10, 10, 10, -10]), s2) == pytest.approx(0.2)
    assert kelly_fraction(trades([10, 10]), s) is None  # too few trades: fraction sizing instead


def test_exit_levels_for_long_and_short():
    s = RiskSettings(stop_loss_pct=0.05, take_profit_pct=0.1)
    long, short = exit_levels(s, 1, 200, None), exit_levels(s, -1, 200, None)
    assert (long.stop, long.take_profit) == (pytest.approx(190), pytest.approx(220))
    assert (short.stop, short.take_profit) == (pytest.approx(210), pytest.approx(180))
    r = RiskSettings(stop_loss_pct=0.02, atr_stop_multiple=3, take_profit_r=2)
    # long at 100: 2% stop = 98, ATR stop = 100 - 3 x 0.5 = 98.5 -> the tighter 98.5; TP 100 + 2 x
    # 1.5
    levels = exit_levels(r, 1, 100, 0.5)
    assert levels.stop == pytest.approx(98.5) and levels.take_profit == pytest.approx(103)
    assert trailing_stop(-1, 80, 0.1) == pytest.approx(88)


def test_limits_resize_to_the_binding_rule_and_reject_when_full():
    s = RiskSettings(max_symbol_exposure=0.5, max_total_exposure=0.8, max_open_positions=2)
    # wanted 100 x 100 = 10,000; symbol room 5,000 -> 50; total room 8,000 - 4,000 = 4,000 -> 40
    check = check_portfolio_limits(
        s,
        qty=100,
        price=100,
        equity=10_000,
        open_positions=1,
        symbol_exposure=0,
        total_exposure=4_000,
    )
    assert check.qty == pytest.approx(40) and check.rule == "max_total_exposure"
    full = check_portfolio_limits(
        s, qty=1, price=100, equity=10_000, open_positions=2, symbol_exposure=0, total_exposure=0
    )
    assert full.qty == 0 and full.rule == "max_open_positions"


def test_circuit_breaker_trips_on_drawdown_and_rearms_after_cooldown():
    b = CircuitBreaker(RiskSettings(max_drawdown=0.1, cooldown_bars=3))
    assert b.on_equity(0, 10_000) is None
    assert b.on_equity(1, 9_100) is None  # 9% down
    reason = b.on_equity(2, 9_000)  # 10% down from 10,000
    assert reason is not None and "drawdown 10.00%" in reason and b.tripped
    assert b.on_equity(4, 8_000) is None and b.tripped  # still cooling down
    assert b.on_equity(5, 8_500) is None and not b.tripped  # re-armed, peak reset to 8,500
    assert b.peak == 8_500


def test_circuit_breaker_counts_consecutive_losses_and_stays_down_without_cooldown():
    b = CircuitBreaker(RiskSettings(max_consecutive_losses=3))
    for pnl in (-1, -1, 5, -1, -1):
        b.on_trade_closed(pnl)
    assert b.on_equity(0, 10_000) is None  # the win reset the run: 2 in a row
    b.on_trade_closed(-1)
    assert "3 consecutive losing trades" in b.on_equity(1, 10_000)
    assert b.on_equity(1_000, 10_000) is None and b.tripped  # cooldown 0: until reset
    b.reset(10_000)
    assert not b.tripped and b.consecutive_losses == 0


def test_daily_loss_guard_uses_the_previous_days_last_equity_and_resets_next_day():
    g = DailyLossGuard(max_daily_loss=0.05)
    day1 = pd.Timestamp("2024-01-01 23:00", tz="UTC")
    assert g.on_equity(day1, 10_000, 10_000) is None
    day2 = pd.Timestamp("2024-01-02 00:00", tz="UTC")
    assert g.on_equity(day2, 9_800, 10_000) is None  # 2% below the day's start of 10,000
    assert "daily loss 5.00%" in g.on_equity(day2 + pd.Timedelta("1h"), 9_500, 9_800)
    assert g.halted
    day3 = pd.Timestamp("2024-01-03 00:00", tz="UTC")
    assert g.on_equity(day3, 9_400, 9_500) is None and not g.halted
