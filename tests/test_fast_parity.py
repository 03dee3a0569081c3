"""The compiled fast path and the event-driven engine give the same trades and equity.

Both implement docs/execution.md; the runner takes the fast path whenever the settings fit it, so
any difference here is a bug on one side. Seeded synthetic data (gaps included, so gap-through stops
happen), several strategies plus random targets (frequent reversals), both fill modes, fees,
slippage, stops, take-profits (% and R, touch and through), trailing stops, time exits, fixed and
fraction sizing, lot size, minimum notional, the insufficient-cash cut, shorts, the close at the
end of the data, and a participation cap that binds: the `cap-` configurations rescale the volumes
so that one bar takes a fraction of a position, and entries, exits, stops and take-profits fill
over several bars (the tests check that they do).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from n1v1.backtest.fast import simulate
from n1v1.backtest.runner import fast_config, fast_trades, run_backtest
from n1v1.config import Settings
from n1v1.data.synthetic import SyntheticModel, generate_bars
from n1v1.domain import OrderPurpose, Symbol, Trade
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.signals import PrecomputedTargets
from n1v1.strategies.registry import create_strategy

REL = 1e-9

CONFIGS: dict[str, dict] = {
    "next_open-defaults": {"execution": {"taker_fee": 0.001}},
    "close-fee-slippage": {"execution": {"fill": "close", "slippage_bps": 2.0}},
    "next_open-stop-tp": {
        "execution": {"slippage_bps": 3.0, "maker_fee": 0.0004},
        "risk": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015},
    },
    "close-stop-tp_r-short": {
        "execution": {"fill": "close", "slippage_bps": 1.0},
        "risk": {"stop_loss_pct": 0.008, "take_profit_r": 2.0, "allow_short": True},
    },
    "next_open-trail-time-short": {
        "risk": {
            "trailing_stop_pct": 0.01,
            "time_exit_bars": 30,
            "allow_short": True,
            "fraction": 0.5,
        }
    },
    "close-stop-trail-time-lot-min_notional": {
        "execution": {
            "fill": "close",
            "default_instrument": {"lot_size": 0.01, "min_notional": 50.0},
        },
        "risk": {"stop_loss_pct": 0.01, "trailing_stop_pct": 0.006, "time_exit_bars": 10},
    },
    "next_open-fixed-short-stop-lot": {
        "execution": {"slippage_bps": 1.0, "default_instrument": {"lot_size": 0.1}},
        "risk": {"sizing": "fixed", "qty": 50.0, "allow_short": True, "stop_loss_pct": 0.005},
    },
    "next_open-fixed-cash-cut": {"risk": {"sizing": "fixed", "qty": 120.0}},
    "close-fixed-cash-cut-time": {
        "execution": {"fill": "close", "slippage_bps": 5.0},
        "risk": {"sizing": "fixed", "qty": 120.0, "time_exit_bars": 5},
    },
    "next_open-half-short-tp-min_notional": {
        "execution": {"taker_fee": 0.0002, "default_instrument": {"min_notional": 4950.0}},
        "risk": {"fraction": 0.5, "allow_short": True, "take_profit_pct": 0.01},
    },
    "next_open-stop-tp-through-close_at_end": {
        "execution": {"limit_fill": "through", "maker_fee": 0.0004, "slippage_bps": 2.0},
        "risk": {"stop_loss_pct": 0.01, "take_profit_pct": 0.01},
        "backtest": {"close_at_end": True},
    },
    "cap-next_open-stop-tp": {
        "execution": {"participation_cap": 0.3, "slippage_bps": 3.0, "maker_fee": 0.0004},
        "risk": {"stop_loss_pct": 0.01, "take_profit_pct": 0.015},
    },
    "cap-close-stop-tp_r-short-through": {
        "execution": {
            "fill": "close",
            "participation_cap": 0.5,
            "slippage_bps": 1.0,
            "limit_fill": "through",
        },
        "risk": {"stop_loss_pct": 0.008, "take_profit_r": 2.0, "allow_short": True},
    },
    "cap-next_open-trail-time-short-lot": {
        "execution": {"participation_cap": 0.2, "default_instrument": {"lot_size": 0.1}},
        "risk": {
            "trailing_stop_pct": 0.01,
            "time_exit_bars": 30,
            "allow_short": True,
            "fraction": 0.5,
        },
    },
    "cap-close-fixed-cash-cut-stop-time-close_at_end": {
        "execution": {"fill": "close", "participation_cap": 0.4, "slippage_bps": 5.0},
        "risk": {"sizing": "fixed", "qty": 120.0, "time_exit_bars": 5, "stop_loss_pct": 0.01},
        "backtest": {"close_at_end": True},
    },
    "cap-next_open-short-stop-trail-tp-lot-min_notional-close_at_end": {
        "execution": {
            "participation_cap": 1.0,
            "default_instrument": {"lot_size": 0.01, "min_notional": 50.0},
        },
        "risk": {
            "stop_loss_pct": 0.01,
            "trailing_stop_pct": 0.006,
            "take_profit_pct": 0.012,
            "allow_short": True,
        },
        "backtest": {"close_at_end": True},
    },
}
# Median bar volume for the `cap-` configurations: positions are ~100 units (10,000 at ~100) or
# 120 (fixed), so cap x volume is a few to a few dozen units a bar, and smaller bars take less.
CAP_MEDIAN_VOLUME = 40.0


def bars_for(name: str, bars: pd.DataFrame) -> pd.DataFrame:
    if not name.startswith("cap-"):
        return bars
    return bars.assign(volume=bars["volume"] / bars["volume"].median() * CAP_MEDIAN_VOLUME)


DATASETS = {
    "5m": lambda: generate_bars(2000, timeframe="5m", seed=21),
    "1h-gaps": lambda: generate_bars(
        2000, timeframe="1h", seed=22, model=SyntheticModel(gap_prob=0.05, gap_scale=2.0)
    ),
    "1m": lambda: generate_bars(2000, timeframe="1m", seed=23),
}


@pytest.fixture(scope="module", params=list(DATASETS))
def bars(request) -> pd.DataFrame:
    return DATASETS[request.param]()


def assert_same_trades(engine: list[Trade], fast: list[Trade]) -> None:
    assert len(engine) == len(fast), (len(engine), len(fast))
    for i, (e, f) in enumerate(zip(engine, fast, strict=True)):
        de, df = e.to_dict(), f.to_dict()
        for key, want in de.items():
            got = df[key]
            if isinstance(want, float) and isinstance(got, float):
                assert math.isclose(got, want, rel_tol=REL, abs_tol=1e-9), (i, key, de, df)
            else:
                assert got == want, (i, key, de, df)


def assert_same_equity(engine: pd.Series, fast: pd.Series) -> None:
    assert engine.index.equals(fast.index)
    np.testing.assert_allclose(fast.to_numpy(), engine.to_numpy(), rtol=REL, atol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("strategy", [("sma_cross", {"fast": 5, "slow": 20}), ("rsi", {})])
def test_runner_paths_agree(bars: pd.DataFrame, name: str, strategy) -> None:
    settings = Settings.model_validate(CONFIGS[name])
    bars = bars_for(name, bars)
    strat = create_strategy(*strategy)
    event = run_backtest(bars, strat, settings, engine="event")
    fast = run_backtest(bars, strat, settings, engine="fast")
    assert fast.engine == "fast" and event.engine == "event"
    assert len(event.trades) >= 3  # the comparison must exercise trades
    assert_same_trades(event.trades, fast.trades)
    assert_same_equity(event.equity, fast.equity)
    for key in ("n_trades", "fees_paid", "exposure", "turnover", "final_equity"):
        assert fast.metrics[key] == pytest.approx(event.metrics[key], rel=REL), key


def engine_run(bars: pd.DataFrame, targets: np.ndarray, settings: Settings) -> TradingEngine:
    engine = TradingEngine(settings)
    engine.add_signal_source(PrecomputedTargets.from_arrays("random", {"SYM": targets}))
    engine.run(ReplayFeed({"SYM": bars}))
    return engine


def random_targets_agree(bars: pd.DataFrame, name: str) -> set[OrderPurpose]:
    """Engine and kernel on random targets; returns the purposes of orders filled in parts."""
    # Targets that change every ~8 bars on average: many reversals, re-entries after stops and
    # time exits, rejected entries and the last-bar rule all get exercised.
    bars = bars_for(name, bars)
    rng = np.random.default_rng(len(bars) + len(name))
    changes = rng.random(len(bars)) < 0.12
    targets = rng.choice(np.array([-1, 0, 1], dtype=np.int8), len(bars))
    targets = pd.Series(np.where(changes, targets, np.nan)).ffill().fillna(0).to_numpy(np.int8)
    settings = Settings.model_validate(CONFIGS[name])
    if not settings.risk.allow_short:
        targets = np.maximum(targets, 0)
    engine = engine_run(bars, targets, settings)
    result = simulate(
        *(bars[c].to_numpy() for c in ("open", "high", "low", "close")),
        targets,
        fast_config(settings, "SYM"),
        volume=bars["volume"].to_numpy(),
    )
    assert_same_trades(engine.trades(), fast_trades(result, bars.index, Symbol("SYM")))
    assert_same_equity(engine.equity_series(), pd.Series(result.equity, index=bars.index))
    assert result.fees_paid == pytest.approx(engine.portfolio.fees_paid, rel=REL)
    assert result.traded_notional == pytest.approx(engine.portfolio.traded_notional, rel=REL)
    assert result.exposure_bars == engine.exposure_bars
    fills = Counter(f.client_order_id for f in engine.journal.fills)
    orders = engine.journal.latest_orders()
    return {orders[i].purpose for i, count in fills.items() if count > 1}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_random_targets_with_frequent_reversals_agree(bars: pd.DataFrame, name: str) -> None:
    split = random_targets_agree(bars, name)
    if name.startswith("cap-"):  # the cap binds: entries and exits fill over several bars
        assert {OrderPurpose.ENTRY, OrderPurpose.EXIT} <= split, split


@pytest.mark.parametrize("name", [n for n in CONFIGS if n.startswith("cap-")])
def test_capped_stops_and_take_profits_fill_over_several_bars_alike(name: str) -> None:
    # hourly bars with gaps: stops and take-profits are hit often, and under the cap they fill in
    # parts, bar after bar, with the OCO sibling shrinking to what is left
    split = random_targets_agree(DATASETS["1h-gaps"](), name)
    risk = Settings.model_validate(CONFIGS[name]).risk
    stops = {OrderPurpose.STOP_LOSS, OrderPurpose.TRAILING_STOP}
    assert split & stops, split
    if risk.take_profit_pct is not None or risk.take_profit_r is not None:
        assert OrderPurpose.TAKE_PROFIT in split, split


REVERSAL_BARS = pd.DataFrame(
    {
        "open": [100.0, 100.0, 100.0, 100.0, 100.0],
        "high": [101.0, 101.0, 101.0, 101.0, 101.0],
        "low": [99.0, 99.0, 99.0, 99.0, 99.0],
        "close": [100.0, 100.0, 100.0, 100.0, 100.0],
        "volume": [1.0] * 5,
    },
    index=pd.date_range("2024-01-01", periods=5, freq="1h", tz="UTC"),
)


def test_reversal_into_a_long_at_next_open_is_cut_to_cash_in_both_paths() -> None:
    # fee 0.001, fraction 1, flat prices at 100. t0 target -1: qty = 10000 / (100 * 1.001)
    # = 99.9001 (fee 9.99). t1 open: sell it -> cash 10000 + 9990.01 - 9.99 = 19980.02, equity at
    # t1's close 19980.02 - 9990.01 = 9990.01. t1 target +1: close the short and buy
    # 9990.01 / 100.1 = 99.8003. t2 open: buying back costs 9990.01 + 9.99 -> cash 9980.02; the
    # long entry would cost 99.8003 * 100 * 1.001 = 9990.01 > 9980.02, so docs/execution.md
    # ("Cash") cuts it to 9980.02 / 100.1 = 99.7005.
    targets = np.array([-1, 1, 1, 1, 1], dtype=np.int8)
    settings = Settings.model_validate({"risk": {"allow_short": True}})
    result = simulate(
        *(REVERSAL_BARS[c].to_numpy() for c in ("open", "high", "low", "close")),
        targets,
        fast_config(settings, "SYM"),
    )
    cash_at_t2 = 10000 - 2 * 99.9000999000999 * 100 * 0.001
    assert result.trades[1]["qty"] == pytest.approx(cash_at_t2 / 100.1, rel=1e-12)
    engine = engine_run(REVERSAL_BARS, targets, settings)
    assert engine.trades()[1].qty == pytest.approx(result.trades[1]["qty"], rel=REL)


# Prices on a 1/32 grid and entries at integer opens, so take-profits (entry x (1 +- 1/32), exact
# in binary) land exactly on bar highs and lows: random data never touches a level without
# trading through it, these bars do. Volume 8 and cap 0.5: 4 units a bar.
THROUGH_BARS = pd.DataFrame(
    [
        (128, 128, 128, 128, 1000),  # t0 target +1
        (128, 130, 127, 129, 1000),  # t1 buy 10 @ 128: take-profit 128 x 33/32 = 132
        (129, 132, 128, 131, 8),  # t2 high = 132: touch sells 4 @ 132; through nothing
        (131, 132.5, 130, 132, 8),  # t3 high > 132: both sell 4
        (132, 133, 131, 132, 8),  # t4 touch sells its last 2; through 4
        (132, 134, 131, 133, 1000),  # t5 through sells its last 2; target -1
        (128, 129, 126, 127, 1000),  # t6 short 10 @ 128: take-profit 128 x 31/32 = 124
        (127, 128, 124, 125, 8),  # t7 low = 124: touch buys 4 back; through nothing
        (125, 126, 123.96875, 124, 8),  # t8 low < 124: both buy 4
        (124, 125, 123, 124, 8),  # t9 touch buys its last 2; through 4
        (124, 125, 123, 124, 1000),  # t10 through buys its last 2
    ],
    columns=["open", "high", "low", "close", "volume"],
    index=pd.date_range("2024-01-01", periods=11, freq="1h", tz="UTC"),
).astype(float)


@pytest.mark.parametrize("fill", ["touch", "through"])
def test_take_profit_touch_and_through_agree_on_exact_levels(fill: str) -> None:
    settings = Settings.model_validate(
        {
            "execution": {"participation_cap": 0.5, "limit_fill": fill, "maker_fee": 0.0005},
            "risk": {
                "sizing": "fixed",
                "qty": 10.0,
                "take_profit_pct": 1 / 32,
                "allow_short": True,
            },
        }
    )
    targets = np.array([1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1], dtype=np.int8)
    engine = engine_run(THROUGH_BARS, targets, settings)
    result = simulate(
        *(THROUGH_BARS[c].to_numpy() for c in ("open", "high", "low", "close")),
        targets,
        fast_config(settings, "SYM"),
        volume=THROUGH_BARS["volume"].to_numpy(),
    )
    trades = engine.trades()
    assert_same_trades(trades, fast_trades(result, THROUGH_BARS.index, Symbol("SYM")))
    assert_same_equity(engine.equity_series(), pd.Series(result.equity, index=THROUGH_BARS.index))
    tp_fills = [
        (THROUGH_BARS.index.get_loc(f.timestamp), f.qty)
        for f in engine.journal.fills
        if f.purpose is OrderPurpose.TAKE_PROFIT
    ]
    if fill == "touch":  # the level itself is enough
        assert tp_fills == [(2, 4), (3, 4), (4, 2), (7, 4), (8, 4), (9, 2)]
    else:  # strictly beyond it only
        assert tp_fills == [(3, 4), (4, 4), (5, 2), (8, 4), (9, 4), (10, 2)]
    assert [t.exit_reason for t in trades] == ["take_profit", "take_profit"]
