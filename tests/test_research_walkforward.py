"""Walk-forward optimisation (n1v1/research/walkforward.py), its report and `n1v1 walkforward`.

The expectations are computed independently in the tests: windows by hand, the chosen set from
`local_evaluator` on the training slice, the out-of-sample curve from the event-driven engine fed
the warm targets, lookahead by altering the future and checking nothing before it moved.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from builders import FixedTargets, settings, synthetic_walk
from report_pages import breaks, chart_specs, markers, markup

from n1v1.backtest.metrics import bar_returns, compute_metrics
from n1v1.backtest.runner import run_backtest
from n1v1.cli import main
from n1v1.research.deflated_sharpe import deflated_sharpe_ratio, return_moments
from n1v1.research.evaluate import aggregate, local_evaluator
from n1v1.research.space import grid_sets
from n1v1.research.walkforward import (
    WINDOW_END_REASON,
    Window,
    choose_best,
    parameter_stability,
    walk_forward_optimise,
    walk_forward_windows,
)
from n1v1.research.wf_report import (
    parameter_importance,
    parameter_surface,
    write_walkforward_report,
)
from n1v1.strategies.trend import SmaCross

SETS = [{"fast": f, "slow": s} for f in (3, 5, 8) for s in (12, 20, 30)]
COSTS = settings(execution={"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 2.0})


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synthetic_walk(700, seed=3)


@pytest.fixture(scope="module")
def rolling(bars):
    return walk_forward_optimise(
        {"BTC": bars}, "sma_cross", SETS, COSTS, train_bars=200, test_bars=100
    )


# -- windows -----------------------------------------------------------------------------------
def test_rolling_and_expanding_windows_by_hand():
    spans = [(w.train_start, w.train_end, w.test_end) for w in walk_forward_windows(
        10, train_bars=4, test_bars=2
    )]  # fmt: skip
    assert spans == [(0, 4, 6), (2, 6, 8), (4, 8, 10)]
    expanding = walk_forward_windows(10, train_bars=4, test_bars=2, mode="expanding")
    assert [(w.train_start, w.train_end, w.test_end) for w in expanding] == [
        (0, 4, 6),
        (0, 6, 8),
        (0, 8, 10),
    ]
    # step 3 > test 2: a gap of one bar between test windows; the 11th bar fills no window
    stepped = walk_forward_windows(11, train_bars=4, test_bars=2, step_bars=3)
    assert [(w.train_start, w.train_end, w.test_end) for w in stepped] == [(0, 4, 6), (3, 7, 9)]
    w = Window(1, 2, 6, 8)
    assert (w.train, w.test) == (slice(2, 6), slice(6, 8))
    assert [w.number for w in expanding] == [0, 1, 2]


def test_window_errors_name_the_field():
    with pytest.raises(ValueError, match="step_bars: 1 < test_bars=2"):
        walk_forward_windows(10, train_bars=4, test_bars=2, step_bars=1)
    with pytest.raises(ValueError, match="n_bars: 5 bars are too few"):
        walk_forward_windows(5, train_bars=4, test_bars=2)
    with pytest.raises(ValueError, match="mode"):
        walk_forward_windows(10, train_bars=4, test_bars=2, mode="sliding")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="train_bars"):
        walk_forward_windows(10, train_bars=0, test_bars=2)


# -- choosing ----------------------------------------------------------------------------------
def test_choose_best_ties_undefined_metrics_min_trades_and_direction():
    scores = pd.DataFrame(
        {
            "set_id": [0, 1, 2, 3, 4],
            "sharpe": [1.0, 2.0, None, 2.0, 5.0],
            "max_drawdown": [0.3, 0.1, 0.2, 0.1, 0.05],
            "trades_min": [5, 5, 5, 5, 1],
        }
    )
    assert choose_best(scores, "sharpe") == (4, 4)  # NaN is not eligible
    assert choose_best(scores, "sharpe", min_trades=2) == (1, 3)  # tie 1 vs 3 -> lowest id
    assert choose_best(scores, "max_drawdown", min_trades=2) == (1, 4)  # minimised
    assert choose_best(scores, "sharpe", min_trades=6) == (None, 0)


def test_the_chosen_set_is_the_argmax_of_local_evaluator_on_each_training_slice(bars, rolling):
    assert len(rolling.windows) == 5
    for w in walk_forward_windows(len(bars), train_bars=200, test_bars=100):
        rows = local_evaluator({"BTC": bars.iloc[w.train]}, SmaCross, SETS, COSTS)
        sharpe = aggregate(rows, "sharpe").set_index("set_id")["sharpe"].astype(float)
        best = sharpe.max()
        expected = int(min(i for i, v in sharpe.items() if v == best))
        row = rolling.windows.iloc[w.number]
        assert row["set_id"] == expected
        assert row["params"] == SETS[expected]
        assert row["is_metric"] == pytest.approx(best, rel=1e-12)
    assert sorted(rolling.in_sample["window"].unique()) == [0, 1, 2, 3, 4]
    assert len(rolling.in_sample) == 5 * len(SETS)


# -- out of sample -----------------------------------------------------------------------------
def test_one_window_equals_the_event_engine_on_the_test_bars_with_warm_targets():
    bars = synthetic_walk(300, seed=8)
    config = settings(
        execution={"taker_fee": 0.001, "maker_fee": 0.0005, "slippage_bps": 3.0},
        risk={"stop_loss_pct": 0.05},
    )
    result = walk_forward_optimise(
        {"BTC": bars}, "sma_cross", SETS, config, train_bars=200, test_bars=100
    )
    params = result.windows["params"][0]
    warm = SmaCross(params).target_positions(bars.iloc[:300])[200:]
    test = bars.iloc[200:300]
    event = run_backtest({"BTC": test}, FixedTargets(warm), config, engine="event")
    # a position is open at the end, so the window's forced close is exercised
    (still_open,) = [t for t in event.trades if t.exit_time is None]
    ours = result.equity.to_numpy()
    np.testing.assert_allclose(ours[:-1], event.equity.to_numpy()[:-1], rtol=1e-9)
    close = float(test["close"].iloc[-1])
    price = close * (1 - 3.0 / 10_000)  # a long is sold: slippage lowers the price
    liquidated = (
        event.equity.iloc[-1] + still_open.qty * (price - close) - still_open.qty * (price * 0.001)
    )
    assert ours[-1] == pytest.approx(liquidated, rel=1e-12)
    closed = [t for t in event.trades if t.exit_time is not None]
    assert [(t.entry_time, t.exit_time, t.exit_reason) for t in result.trades[:-1]] == [
        (t.entry_time, t.exit_time, t.exit_reason) for t in closed
    ]
    np.testing.assert_allclose([t.pnl for t in result.trades[:-1]], [t.pnl for t in closed])
    last = result.trades[-1]
    assert (last.exit_reason, last.exit_time, last.exit_price) == (
        WINDOW_END_REASON,
        test.index[-1],
        pytest.approx(price),
    )
    assert last.pnl == pytest.approx(ours[-1] - event.equity.iloc[-1] + still_open.pnl, rel=1e-9)
    # the forced close is the engine's own close_at_end rule, not a copy of it
    closing = settings(
        execution={"taker_fee": 0.001, "maker_fee": 0.0005, "slippage_bps": 3.0},
        risk={"stop_loss_pct": 0.05},
        backtest={"close_at_end": True},
    )
    flat = run_backtest({"BTC": test}, FixedTargets(warm), closing, engine="event")
    np.testing.assert_allclose(ours, flat.equity.to_numpy(), rtol=1e-12)
    assert flat.trades[-1].exit_reason == "end_of_data" and flat.trades[-1].exit_time is not None
    assert last.pnl == pytest.approx(flat.trades[-1].pnl, rel=1e-12)
    assert last.bars_held == flat.trades[-1].bars_held


def test_no_lookahead_altering_bars_after_a_window_changes_nothing_before_it(bars, rolling):
    k_end = 400  # window 1 tests bars [300, 400)
    rng = np.random.default_rng(0)
    altered = bars.copy()
    scale = np.exp(np.cumsum(rng.normal(0.0, 0.03, len(bars) - k_end)))
    for column in ("open", "high", "low", "close"):
        altered.iloc[k_end:, altered.columns.get_loc(column)] *= scale
    again = walk_forward_optimise(
        {"BTC": altered}, "sma_cross", SETS, COSTS, train_bars=200, test_bars=100
    )
    cols = ["set_id", "is_metric", "oos_metric", "oos_trades", "start_equity", "end_equity"]
    pd.testing.assert_frame_equal(again.windows[cols].iloc[:2], rolling.windows[cols].iloc[:2])
    before = rolling.equity.index < bars.index[k_end]
    pd.testing.assert_series_equal(again.equity[before], rolling.equity[before])
    assert not np.allclose(again.equity[~before], rolling.equity[~before])  # the change bit


def test_stitched_equity_starts_at_the_cash_and_compounds_window_to_window(bars, rolling):
    equity, table = rolling.equity, rolling.windows
    assert equity.iloc[0] == 10_000.0
    assert len(equity) == 500 and equity.index.equals(bars.index[200:700])
    assert table["start_equity"].iloc[0] == 10_000.0
    for k in range(1, len(table)):
        assert table["start_equity"].iloc[k] == table["end_equity"].iloc[k - 1]
        first_bar = equity.index.get_loc(table["test_start"].iloc[k])
        # next_open fills: nothing fills on a window's first bar, so it starts at the last end
        assert equity.iloc[first_bar] == table["end_equity"].iloc[k - 1]
        assert equity.iloc[first_bar - 1] == table["end_equity"].iloc[k - 1]
    assert rolling.boundaries == list(table["test_start"])
    assert rolling.metrics["final_equity"] == equity.iloc[-1]
    assert rolling.metrics["n_trades"] == len(rolling.trades)  # all closed by window ends
    for t in rolling.trades:
        if t.exit_reason == WINDOW_END_REASON:
            assert t.exit_time in set(table["test_end"])


def test_per_window_oos_metric_and_degradation_figures(rolling):
    table = rolling.windows
    for row in table.to_dict(orient="records"):
        window = rolling.equity[row["test_start"] : row["test_end"]]
        m = compute_metrics(
            window,
            [],
            row["start_equity"],
            fills_notional=0.0,
            fees_paid=0.0,
            periods_per_year=8760.0,
        )
        assert row["oos_metric"] == pytest.approx(m["sharpe"], rel=1e-9)
        assert row["oos_cagr"] == pytest.approx(m["cagr"], rel=1e-9)
        assert row["oos_minus_is"] == pytest.approx(row["oos_metric"] - row["is_metric"])
        if row["is_metric"] > 0:
            assert row["oos_is_ratio"] == pytest.approx(row["oos_metric"] / row["is_metric"])
        else:
            assert row["oos_is_ratio"] is None or math.isnan(row["oos_is_ratio"])
        if row["is_cagr"] > 0:
            assert row["wfe"] == pytest.approx(row["oos_cagr"] / row["is_cagr"])
    s = rolling.summary
    assert s["is_metric_mean"] == pytest.approx(table["is_metric"].mean())
    assert s["oos_metric_stitched"] == rolling.metrics["sharpe"]
    is_cagr = table["is_cagr"].mean()
    assert s["wfe"] == (pytest.approx(rolling.metrics["cagr"] / is_cagr) if is_cagr > 0 else None)


def test_deflated_sharpe_uses_the_oos_returns_and_the_trials_spread(rolling):
    returns = bar_returns(rolling.equity.to_numpy(), 10_000.0)
    sr, skew, kurt, n = return_moments(returns)
    variances = []
    for _, rows in rolling.in_sample.groupby("window"):
        per_set = rows.groupby("set_id")["sharpe"].mean().astype(float).dropna()
        variances.append((per_set / math.sqrt(8760.0)).var(ddof=1))
    expected = deflated_sharpe_ratio(
        sr,
        n_trials=len(SETS),
        trials_variance=float(np.mean(variances)),
        n_obs=n,
        skew=skew,
        kurtosis=kurt,
    )
    dsr = rolling.deflated_sharpe
    assert dsr is not None and dsr.n_trials == 9 and dsr.n_obs == 500
    assert dsr.dsr == pytest.approx(expected.dsr, rel=1e-9)
    assert dsr.sharpe == pytest.approx(rolling.metrics["sharpe"] / math.sqrt(8760.0), rel=1e-9)
    assert rolling.summary["dsr"] == dsr.dsr


def test_expanding_mode_trains_from_the_first_bar(bars):
    result = walk_forward_optimise(
        {"BTC": bars}, "sma_cross", SETS, COSTS, train_bars=300, test_bars=200, mode="expanding"
    )
    assert list(result.windows["train_bars"]) == [300, 500]
    assert set(result.windows["train_start"]) == {bars.index[0]}
    assert result.config["mode"] == "expanding"
    assert result.notes == []  # 300 + 2 x 200 = 700 bars: nothing left over


# -- stability ---------------------------------------------------------------------------------
def test_parameter_stability_on_a_hand_made_case():
    chosen = [
        {"fast": 10, "slow": 30, "flag": True, "kind": "a"},
        {"fast": 10, "slow": 40, "flag": False, "kind": "b"},
        {"fast": 20, "slow": 30, "flag": True, "kind": "a"},
        {"fast": 10, "slow": 40, "flag": True, "kind": "a"},
    ]
    table = parameter_stability(chosen).set_index("parameter")
    fast = table.loc["fast"]
    # values 10, 10, 20, 10: mean 12.5; deviations -2.5, -2.5, 7.5, -2.5 -> variance
    # (6.25 * 3 + 56.25) / 4 = 18.75, std 4.330127018922193, cv = std / 12.5 = 0.346410161513775
    assert fast["values"] == [10, 10, 20, 10]
    assert (fast["mode"], fast["mode_count"], fast["mode_share"], fast["n_distinct"]) == (
        10,
        3,
        0.75,
        2,
    )
    assert fast["mean"] == 12.5
    assert fast["std"] == pytest.approx(4.330127018922193, rel=1e-15)
    assert fast["cv"] == pytest.approx(0.346410161513775, rel=1e-14)
    slow = table.loc["slow"]  # 30, 40, 30, 40: a tie, the value chosen first is the mode
    assert (slow["mode"], slow["mode_share"], slow["mean"], slow["std"]) == (30, 0.5, 35.0, 5.0)
    assert slow["cv"] == pytest.approx(5.0 / 35.0)
    flag, kind = table.loc["flag"], table.loc["kind"]
    assert (flag["mode"], flag["mode_count"]) == (True, 3) and pd.isna(flag["mean"])
    assert (kind["mode"], kind["n_distinct"]) == ("a", 2) and pd.isna(kind["cv"])
    only = parameter_stability(chosen, ["slow"])
    assert list(only["parameter"]) == ["slow"]


def test_the_run_reports_stability_of_the_varied_parameters(rolling):
    chosen = list(rolling.windows["params"])
    expected = parameter_stability(chosen, ["fast", "slow"])
    pd.testing.assert_frame_equal(rolling.stability, expected)
    assert rolling.config["varying_parameters"] == ["fast", "slow"]


# -- edge cases --------------------------------------------------------------------------------
def test_a_window_without_an_eligible_set_stays_in_cash(bars):
    result = walk_forward_optimise(
        {"BTC": bars.iloc[:500]},
        "sma_cross",
        SETS[:2],
        COSTS,
        train_bars=200,
        test_bars=100,
        min_trades=10_000,
    )
    assert (result.equity == 10_000.0).all()
    assert result.windows["set_id"].isna().all() and result.trades == []
    assert any("no eligible parameter set" in n for n in result.notes)
    assert result.deflated_sharpe is None and any("constant" in n for n in result.notes)
    assert result.stability[["parameter", "values"]].to_dict("records") == [
        {"parameter": "slow", "values": []}  # SETS[:2] vary slow only
    ]
    json.dumps(result.to_dict(), allow_nan=False)


def test_the_report_renders_a_window_that_stayed_in_cash(bars, tmp_path):
    result = walk_forward_optimise(
        {"BTC": bars.iloc[:500]}, "sma_cross", SETS[:2], COSTS, train_bars=200, test_bars=100,
        min_trades=10_000,
    )  # fmt: skip
    assert result.config["varying_parameters"] == ["slow"] and result.windows["params"][0] is None
    page = write_walkforward_report(tmp_path / "cash.html", result).read_text(encoding="utf-8")
    assert page.count("<td></td>") >= 3  # the parameters cell of each window in cash is empty


@pytest.fixture(scope="module")
def gappy(bars) -> pd.DataFrame:
    """The hourly bars with a 30-day hole before bar 250 (a gap at 10x the 1-hour spacing)."""
    shifted = bars.copy()
    late = np.arange(len(bars)) >= 250
    shifted.index = bars.index.where(~late, bars.index + pd.Timedelta(days=30))
    return shifted


def test_windows_straddling_a_gap_are_named_and_withheld(gappy, tmp_path):
    result = walk_forward_optimise(
        {"BTC": gappy}, "sma_cross", SETS, COSTS, train_bars=200, test_bars=100
    )
    # windows: test [200, 300) holds bar 250; trains [100, 300) and [200, 400) hold it too
    assert result.windows["test_gaps"].tolist() == [1, 0, 0, 0, 0]
    assert result.windows["train_gaps"].tolist() == [0, 1, 1, 0, 0]
    # sharpe is annualised: withheld on the two training slices, so those windows stay in cash
    assert result.windows["set_id"].isna().tolist() == [False, True, True, False, False]
    notes = " ".join(result.notes)
    assert (
        "window 1: its training bars (2024-01-05 04:00 to 2024-02-12 11:00) straddle 1 gap" in notes
    )
    assert "so no set could be chosen by sharpe" in notes
    assert "window 0: its test bars" in notes
    # the stitched curve holds the gap: annualised figures and the DSR are withheld
    assert result.metrics["n_gaps"] == 1 and result.metrics["sharpe"] is None
    assert result.deflated_sharpe is None
    assert "stitched out-of-sample curve has 1 gap(s)" in notes
    data = result.to_dict()
    assert data["gaps"][0]["missing_bars"] == 720  # 30 days of hourly bars
    assert data["config"]["gap_policy"] == "refuse"
    page = write_walkforward_report(tmp_path / "gaps.html", result).read_text(encoding="utf-8")
    (equity,) = chart_specs(page)["wf-equity"]["series"]
    assert len(breaks(equity)) == 1 and "train 1, test 0" in page
    assert len(markers(chart_specs(page)["wf-equity"], "gap")) == 1
    # opting in: every window chooses a set and the stitched figures are computed
    allow = walk_forward_optimise(
        {"BTC": gappy}, "sma_cross", SETS, settings(
            execution={"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 2.0},
            backtest={"gaps": "allow"},
        ), train_bars=200, test_bars=100,
    )  # fmt: skip
    assert allow.windows["set_id"].notna().all()
    assert allow.metrics["sharpe"] is not None and allow.deflated_sharpe is not None


def test_several_symbols_share_a_common_index_and_split_the_equity():
    a, b = synthetic_walk(400, seed=1), synthetic_walk(400, seed=2)
    b = b.drop(b.index[[5, 6, 7]])
    one = [{"fast": 5, "slow": 20}]
    both = walk_forward_optimise(
        {"A": a, "B": b}, "sma_cross", one, COSTS, train_bars=197, test_bars=200
    )
    assert both.config["index"] == "intersection of the symbols' indexes"
    assert both.notes[0] == "A: 3 bars not shared by every symbol were dropped"
    common = a.index.drop(a.index[[5, 6, 7]])
    assert both.equity.index.equals(common[197:397])
    # one window, one set: the portfolio is A and B each traded with half of the cash
    half = settings(
        execution={"taker_fee": 0.001, "maker_fee": 0.001, "slippage_bps": 2.0},
        backtest={"cash": 5_000.0},
    )
    alone = [
        walk_forward_optimise(
            {s: f.loc[common]}, "sma_cross", one, half, train_bars=197, test_bars=200
        ).equity
        for s, f in (("A", a), ("B", b))
    ]
    np.testing.assert_allclose(both.equity.to_numpy(), (alone[0] + alone[1]).to_numpy())
    assert both.equity.iloc[0] == 10_000.0


def test_bad_arguments_are_named(bars):
    frames = {"BTC": bars}
    with pytest.raises(ValueError, match="metric 'sharp'"):
        walk_forward_optimise(frames, "sma_cross", SETS, COSTS, train_bars=9, test_bars=9,
                              metric="sharp")  # fmt: skip
    with pytest.raises(ValueError, match=r"param_sets\[1\]"):
        walk_forward_optimise(frames, "sma_cross", [SETS[0], {"fast": 30, "slow": 10}], COSTS,
                              train_bars=200, test_bars=100)  # fmt: skip
    with pytest.raises(ValueError, match="param_sets: empty"):
        walk_forward_optimise(frames, "sma_cross", [], COSTS, train_bars=200, test_bars=100)
    with pytest.raises(ValueError, match="min_trades"):
        walk_forward_optimise(frames, "sma_cross", SETS, COSTS, train_bars=200, test_bars=100,
                              min_trades=-1)  # fmt: skip


def test_param_sets_from_the_space_module_are_accepted(bars):
    sets = grid_sets(SmaCross, {"fast": "3,5", "slow": "12:20:8"})
    result = walk_forward_optimise(
        {"BTC": bars.iloc[:400]}, SmaCross, sets, COSTS, train_bars=200, test_bars=100
    )
    assert result.config["n_param_sets"] == 4 and len(result.windows) == 2


# -- report ------------------------------------------------------------------------------------
def test_parameter_importance_ranks_the_larger_main_effect_first():
    surface = pd.DataFrame(
        {"fast": [1, 1, 2, 2], "slow": [1, 2, 1, 2], "sharpe": [0.0, 0.0, 10.0, 10.0]}
    )
    # fast's means: 0 and 10 -> variance 25; slow's: 5 and 5 -> 0
    importance = parameter_importance(surface, "sharpe", ["fast", "slow"])
    assert list(importance.index) == ["fast", "slow"]
    assert importance["fast"] == 25.0 and importance["slow"] == 0.0


def test_the_surface_averages_each_set_over_windows(rolling):
    surface = parameter_surface(rolling).set_index("set_id")
    rows = rolling.in_sample
    expected = rows.groupby("set_id")["sharpe"].mean().astype(float)  # one symbol per window
    np.testing.assert_allclose(surface["sharpe"], expected)
    assert list(surface.columns) == ["fast", "slow", "sharpe"]


def test_the_html_report_has_the_equity_window_and_heatmap_charts(rolling, tmp_path):
    path = write_walkforward_report(tmp_path / "out" / "wf.html", rolling)
    page = path.read_text(encoding="utf-8")
    charts = chart_specs(page)
    assert list(charts) == ["wf-equity", "wf-windows"]
    equity = charts["wf-equity"]
    assert equity["log"] is True  # the early windows of a grown curve need it
    starts = [int(pd.Timestamp(t).value // 1_000_000_000) for t in rolling.boundaries]
    assert [m["x"] for m in markers(equity, "window")] == starts  # each window's first test bar
    drawn = equity["series"][0]["data"]
    assert drawn[-1][1] == pytest.approx(float(rolling.equity.iloc[-1]))
    in_sample, out_of_sample = charts["wf-windows"]["series"]
    assert [r[1] for r in in_sample["data"]] == pytest.approx(
        [float(v) for v in rolling.windows["is_metric"]], nan_ok=True
    )
    assert [r[1] for r in out_of_sample["data"]] == pytest.approx(
        [float(v) for v in rolling.windows["oos_metric"]], nan_ok=True
    )
    assert len(in_sample["data"]) == 5  # one point per window
    heat = re.findall(r'<table class="heatmap".*?</table>', page, flags=re.S)
    assert len(heat) == 1 and heat[0].count('class="cell"') == 9  # fast x slow
    assert "<svg" not in markup(page)  # no hand-drawn chart left
    assert "Deflated Sharpe ratio" in page and "Parameter stability" in page
    data = re.search(
        r'<script type="application/json" id="walkforward-json">(.*?)</script>', page, re.S
    )
    assert data is not None
    loaded = json.loads(data.group(1))
    assert loaded["summary"]["n_windows"] == 5 and len(loaded["windows"]) == 5


def test_json_round_trip(rolling, tmp_path):
    path = rolling.write_json(tmp_path / "wf.json")
    data = json.loads(path.read_text())
    assert data["config"]["n_param_sets"] == 9
    assert len(data["equity"]) == 500 and data["equity"][0][1] == 10_000.0
    assert data["windows"][0]["test_start"] == rolling.windows["test_start"][0].isoformat()
    assert data["deflated_sharpe"]["dsr"] == rolling.deflated_sharpe.dsr


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_walkforward_local_end_to_end(capsys, tmp_path):
    json_path, html_path = tmp_path / "wf.json", tmp_path / "wf.html"
    code = main(
        [
            "walkforward",
            "--data",
            "binance_BTC-USDT_1h",
            "--strategy",
            "sma_cross",
            "--grid",
            "fast=3,5",
            "--grid",
            "slow=8:16:8",
            "--train-bars",
            "50",
            "--test-bars",
            "20",
            "--fee",
            "0.001",
            "--local",
            "--json",
            str(json_path),
            "--report",
            str(html_path),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "4 parameter sets (fast x slow)" in out.out
    assert "Deflated Sharpe ratio" in out.out and "walk-forward efficiency" in out.out
    data = json.loads(json_path.read_text())
    n = len(data["windows"])
    assert n == 3  # 120 bars: windows end at 70, 90, 110; 10 bars left over
    assert len(re.findall(r"^\d+ +\d{4}-\d\d-\d\d", out.out, flags=re.M)) == n
    assert "window 3/3 done" in out.err
    assert list(chart_specs(html_path.read_text())) == ["wf-equity", "wf-windows"]


def test_cli_walkforward_user_errors_exit_2(capsys):
    base = ["walkforward", "--data", "binance_BTC-USDT_1h", "--strategy", "sma_cross", "--local"]
    assert main([*base, "--grid", "fast=3", "--train-bars", "500", "--test-bars", "20"]) == 2
    assert "n1v1: error: n_bars: 120 bars are too few" in capsys.readouterr().err
    assert main([*base, "--train-bars", "50", "--test-bars", "20"]) == 2
    assert "--grid K=SPEC" in capsys.readouterr().err
    assert main([*base, "--grid", "fast=3", "--metric", "sharp", "--train-bars", "50",
                 "--test-bars", "20"]) == 2  # fmt: skip
    assert "--metric 'sharp'" in capsys.readouterr().err
    assert main([*base, "--grid", "fast", "--train-bars", "50", "--test-bars", "20"]) == 2
    assert "expected K=SPEC" in capsys.readouterr().err


# -- on Ray ------------------------------------------------------------------------------------
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason="Ray is a dependency; this guards a broken install")
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_ray_evaluator_gives_the_same_walk_forward(cluster, bars, rolling):
    from n1v1.research.distributed import RayEvaluator

    on_ray = walk_forward_optimise(
        {"BTC": bars},
        "sma_cross",
        SETS,
        COSTS,
        train_bars=200,
        test_bars=100,
        evaluator=RayEvaluator(chunk_size=2),
    )
    pd.testing.assert_frame_equal(on_ray.windows, rolling.windows)
    pd.testing.assert_series_equal(on_ray.equity, rolling.equity)
    pd.testing.assert_frame_equal(on_ray.in_sample, rolling.in_sample)


def test_cli_walkforward_on_ray(cluster, capsys, tmp_path):
    code = main(
        [
            "walkforward",
            "--data",
            "binance_BTC-USDT_1h",
            "--strategy",
            "sma_cross",
            "--random",
            "5",
            "--seed",
            "1",
            "--grid",
            "fast=2:6",
            "--grid",
            "slow=10:30",
            "--train-bars",
            "60",
            "--test-bars",
            "30",
            "--chunk-size",
            "2",
            "--json",
            str(tmp_path / "wf.json"),
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "on Ray" in out.out and "5 parameter sets" in out.out
    data = json.loads((tmp_path / "wf.json").read_text())
    assert data["config"]["n_param_sets"] == 5 and len(data["windows"]) == 2
