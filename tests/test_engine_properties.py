"""Invariants of the engine's accounting, checked on random markets, targets and settings."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from builders import run_engine, settings, synthetic_walk
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from n1v1.backtest.runner import run_backtest
from n1v1.strategies import create_strategy

N_BARS = 60


@st.composite
def scenarios(draw):
    seed = draw(st.integers(0, 10_000))
    targets = draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=N_BARS, max_size=N_BARS))
    fee = draw(st.sampled_from([0.0, 0.0005, 0.001, 0.0075]))
    execution = {
        "taker_fee": fee,
        "maker_fee": fee / 2,
        "slippage_bps": draw(st.sampled_from([0.0, 1.0, 25.0])),
        "fill": draw(st.sampled_from(["next_open", "close"])),
        "participation_cap": draw(st.sampled_from([None, 0.01, 0.5])),
        "default_instrument": {"lot_size": draw(st.sampled_from([0.0, 0.01]))},
    }
    risk = {
        "allow_short": draw(st.booleans()),
        "fraction": draw(st.sampled_from([0.3, 1.0, 2.0])),
        "stop_loss_pct": draw(st.sampled_from([None, 0.01, 0.05])),
        "take_profit_pct": draw(st.sampled_from([None, 0.02])),
        "trailing_stop_pct": draw(st.sampled_from([None, 0.03])),
        "time_exit_bars": draw(st.sampled_from([None, 3])),
    }
    return seed, targets, execution, risk


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_accounting_identities_hold_for_any_run(scenario):
    seed, targets, execution, risk = scenario
    bars = synthetic_walk(N_BARS, seed, vol=0.02)
    # low volume so that participation caps really split orders
    bars["volume"] = np.random.default_rng(seed).uniform(1, 100, N_BARS)
    engine = run_engine(bars, targets, settings(execution=execution, risk=risk))
    pf = engine.portfolio

    for point in engine.journal.equity:
        assert point.equity == pytest.approx(point.cash + point.position_value, rel=1e-12, abs=1e-9)

    # rebuilt from the journal's fills alone, cash and positions give the same equity
    last_close = float(bars["close"].iloc[-1])
    cash = pf.initial_cash - sum(
        f.side.sign * f.qty * f.price + f.fee for f in engine.journal.fills
    )
    qty = sum(f.side.sign * f.qty for f in engine.journal.fills)
    assert pf.cash == pytest.approx(cash, rel=1e-9, abs=1e-6)
    assert pf.equity == pytest.approx(cash + qty * last_close, rel=1e-9, abs=1e-6)

    # equity = initial cash + net PnL of closed trades + PnL of the open ones (booked on partial
    # exits plus the rest marked at the last close), fees included: for every run, partial exits
    # under the participation cap included
    open_trades = engine.trades()[len(pf.closed_trades) :]
    assert all(t.exit_time is None for t in open_trades)
    for t in open_trades:
        assert t.open_qty == abs(pf.position(t.symbol).qty) > 0.0
    closed_pnl = sum(t.pnl for t in pf.closed_trades)
    open_pnl = sum(t.pnl for t in open_trades)
    assert pf.equity == pytest.approx(pf.initial_cash + closed_pnl + open_pnl, rel=1e-9, abs=1e-6)
    assert pf.fees_paid == pytest.approx(sum(t.fees for t in engine.trades()), rel=1e-9, abs=1e-9)
    assert pf.fees_paid == pytest.approx(sum(f.fee for f in engine.journal.fills), rel=1e-12)

    if not risk["allow_short"]:
        assert all(p.qty >= 0 for p in pf.positions.values())
        assert pf.cash >= -1e-6  # spot: never borrows cash
    # every order ends its life in a terminal state and every fill belongs to a known order
    latest = engine.journal.latest_orders()
    assert all(o.status.is_terminal for o in latest.values())
    assert {f.client_order_id for f in engine.journal.fills} <= set(latest)
    for order in latest.values():
        filled = sum(
            f.qty for f in engine.journal.fills if f.client_order_id == order.client_order_id
        )
        assert filled == pytest.approx(order.filled_qty, rel=1e-12, abs=1e-12)


def trade_hash(result) -> str:
    payload = json.dumps([t.to_dict() for t in result.trades], sort_keys=True)
    payload += json.dumps(result.equity.round(10).tolist())
    return hashlib.sha256(payload.encode()).hexdigest()


@pytest.mark.parametrize("engine", ["event", "fast"])
def test_running_twice_gives_the_same_trades(engine):
    bars = synthetic_walk(2_000, seed=7, vol=0.005)
    strategy = create_strategy("sma_cross", {"fast": 5, "slow": 20})
    config = settings(
        execution={"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 2},
        risk={"stop_loss_pct": 0.01, "allow_short": True},
    )
    first = run_backtest(bars, strategy, config, engine=engine)
    second = run_backtest(bars, strategy, config, engine=engine)
    assert first.metrics["n_trades"] > 20
    assert trade_hash(first) == trade_hash(second)
