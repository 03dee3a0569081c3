"""Several strategies on one symbol: netting, which strategies each order records, and each
strategy's own P&L from its shadow account, worked out by hand (docs/execution.md, "Several
strategies on one symbol")."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from builders import FixedTargets, make_bars, settings

from n1v1.backtest.runner import BacktestError, run_backtest
from n1v1.domain import OrderPurpose, Side

approx = pytest.approx

# (open, high, low, close); every fill below is at an open
BARS = make_bars(
    [
        (100, 100, 100, 100),
        (100, 102, 99, 102),
        (102, 104, 101, 104),
        (104, 104, 103, 103),
        (103, 103, 101, 101),
        (101, 101, 99, 99),
        (99, 99, 99, 99),
    ]
)
TREND = FixedTargets([1, 1, 1, 1, 0, 0, 0], name="trend")
REVERT = FixedTargets([0, 0, -1, -1, -1, 0, 0], name="revert")
CONFIG = settings(risk={"sizing": "fixed", "qty": 10, "allow_short": True})


def test_the_account_trades_the_sign_of_the_summed_targets() -> None:
    result = run_backtest(BARS, [TREND, REVERT], CONFIG)
    # sums: +1 +1 0 0 -1 0 0 -> long from bar 1's open 100 to bar 3's open 104 (+40), short from
    # bar 5's open 101 to bar 6's open 99 (+20): +60
    assert [(t.side, t.entry_price, t.exit_price, t.pnl) for t in result.trades] == [
        (Side.BUY, 100, 104, approx(40)),
        (Side.SELL, 101, 99, approx(20)),
    ]
    assert result.metrics["final_equity"] == approx(10_060)
    assert result.engine == "event" and result.strategy == "trend+revert"


def test_each_order_records_the_strategies_whose_targets_caused_it() -> None:
    journal = run_backtest(BARS, [TREND, REVERT], CONFIG).journal
    assert journal is not None
    orders = list(journal.latest_orders().values())
    # bar 0: the long is trend's (+1); bar 2: revert's -1 cancels it out, so revert closes it;
    # bar 4: the short is revert's; bar 5: neither holds it any more (both 0), both close it
    assert [(o.created_at, o.purpose, o.side, o.strategy) for o in orders] == [
        (BARS.index[0], OrderPurpose.ENTRY, Side.BUY, "trend"),
        (BARS.index[2], OrderPurpose.EXIT, Side.SELL, "revert"),
        (BARS.index[4], OrderPurpose.ENTRY, Side.SELL, "revert"),
        (BARS.index[5], OrderPurpose.EXIT, Side.BUY, "trend+revert"),
    ]


def test_a_stop_and_a_take_profit_record_the_strategies_holding_the_position_they_protect() -> None:
    both_long = FixedTargets([1, 1, 1, 1, 0, 0, 0], name="other")  # long with trend, bars 0..3
    config = settings(risk={"sizing": "fixed", "qty": 10, "stop_loss_pct": 0.05,
                            "take_profit_pct": 0.5})  # fmt: skip
    journal = run_backtest(BARS, [TREND, REVERT, both_long], config).journal
    assert journal is not None
    orders = list(journal.latest_orders().values())
    # bar 0: trend and other are long (revert flat) -> an entry by "trend+other", filled at bar
    # 1's open 100; its stop (95) and take-profit (150) protect the position of those two
    protective = [(o.purpose, o.price, o.strategy) for o in orders if o.oco_group]
    assert protective[:2] == [
        (OrderPurpose.STOP_LOSS, 95.0, "trend+other"),
        (OrderPurpose.TAKE_PROFIT, 150.0, "trend+other"),
    ]


def test_each_strategys_pnl_is_its_own_target_traded_alone_at_the_same_prices() -> None:
    result = run_backtest(BARS, [TREND, REVERT], CONFIG)
    trend, revert = result.strategies["trend"], result.strategies["revert"]
    assert trend["basis"] == revert["basis"] == "shadow"
    # trend alone: long 10 from bar 1's open 100 to bar 5's open 101: +10
    assert trend["metrics"]["final_equity"] == approx(10_010)
    assert trend["metrics"]["n_trades"] == 1
    # revert alone: short 10 from bar 3's open 104 to bar 6's open 99: +50
    assert revert["metrics"]["final_equity"] == approx(10_050)
    # with fixed quantities and no fees the shadows add up to the account (+10 +50 = +60):
    # netting only offsets trend's long against revert's short from bar 3 to bar 5
    assert trend["metrics"]["final_equity"] + revert["metrics"]["final_equity"] - 10_000 == approx(
        result.metrics["final_equity"]
    )
    assert result.to_dict()["strategies"]["revert"]["metrics"]["final_equity"] == approx(10_050)


def test_the_shadows_do_not_change_the_accounts_orders_fills_or_equity() -> None:
    config = settings(
        execution={"taker_fee": 0.001, "maker_fee": 0.0005, "slippage_bps": 5},
        risk={"fraction": 0.5, "allow_short": True, "stop_loss_pct": 0.02},
    )
    with_shadows = run_backtest(BARS, [TREND, REVERT], config)
    without = run_backtest(BARS, [TREND, REVERT], config, shadows=False)
    assert without.strategies == {} and set(with_shadows.strategies) == {"trend", "revert"}
    assert with_shadows.journal is not None and without.journal is not None
    assert with_shadows.journal.fills == without.journal.fills
    assert [dataclasses.asdict(o) for o in with_shadows.journal.orders] == [
        dataclasses.asdict(o) for o in without.journal.orders
    ]
    assert with_shadows.equity.equals(without.equity)
    assert with_shadows.metrics == without.metrics


def test_one_strategy_alone_is_its_accounts_pnl() -> None:
    result = run_backtest(BARS, TREND, CONFIG)
    assert result.strategies == {
        "trend": {"basis": "account", "params": {}, "metrics": result.metrics}
    }


def test_strategies_need_distinct_names_and_the_fast_path_refuses_several() -> None:
    with pytest.raises(BacktestError, match=r"\['trend'\] named more than once"):
        run_backtest(BARS, [TREND, TREND], CONFIG)
    with pytest.raises(BacktestError, match="more than one strategy"):
        run_backtest(BARS, [TREND, REVERT], CONFIG, engine="fast")
    twice = run_backtest(BARS, {"a": TREND, "b": TREND}, CONFIG)  # named by the mapping
    assert set(twice.strategies) == {"a", "b"}


def test_the_cli_nets_repeated_strategies_and_prints_one_line_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from n1v1.cli import main

    data = tmp_path / "bars_BTC-USD.csv"
    BARS.rename_axis("timestamp").to_csv(data)
    out = tmp_path / "r.json"
    argv = ["backtest", "--data", str(data), "--strategy", "ema_cross", "--strategy", "rsi"]
    code = main([*argv, "--param", "ema_cross.fast=2", "--param", "ema_cross.slow=3",
                 "--json", str(out), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    saved = json.loads(out.read_text())
    for name in ("ema_cross", "rsi"):
        net = saved["strategies"][name]["metrics"]["final_equity"] - 10_000
        assert f"  {name}: net P&L {net:+,.2f}" in printed
    assert saved["meta"]["strategy"] == "ema_cross+rsi"
