"""Evaluation metrics against answers computed by hand, and the walk-forward loop: purge gaps, no
information from later blocks reaching earlier decisions, the economic test wired to run_backtest,
JSON, the HTML report and `n1v1 evaluate`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from report_pages import breaks, chart_specs, markers, markup

from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data.synthetic import generate_bars
from n1v1.ml.evaluation import EvaluationError, walk_forward_evaluate
from n1v1.ml.labels import LabelSpec
from n1v1.ml.metrics import (
    average_ranks,
    brier_score,
    expected_calibration_error,
    log_loss,
    probability_metrics,
    reliability_table,
    roc_auc,
)
from n1v1.ml.models import ModelSpec
from n1v1.ml.spec import TrainSpec
from n1v1.strategies.ml_signal import MLSignal

# -- metrics -----------------------------------------------------------------------------------


def test_average_ranks_share_ties():
    # sorted: 1 -> rank 1, 2 -> rank 2, the two 3s span ranks 3 and 4 -> 3.5 each
    np.testing.assert_array_equal(average_ranks([3, 1, 3, 2]), [3.5, 1.0, 3.5, 2.0])


def test_roc_auc_counts_correctly_ordered_pairs():
    # positives {0.35, 0.8}, negatives {0.1, 0.4}: 0.35>0.1 yes, 0.35>0.4 no, 0.8>both yes -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_roc_auc_counts_a_tie_as_one_half():
    # positives {0.5, 0.9}, negatives {0.5, 0.2}: (0.5 vs 0.5) = 1/2, the other three pairs = 1
    # -> 3.5 / 4 = 0.875
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)


def test_roc_auc_matches_brute_force_pair_counting_with_many_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 7, 300) / 6.0  # seven distinct values: lots of ties
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(y, s) == pytest.approx(wins / (pos.size * neg.size), abs=1e-12)


def test_roc_auc_is_nan_when_a_class_is_missing():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_log_loss_binary_multiclass_and_clipping():
    # -(ln 0.8 + ln(1 - 0.4)) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # true classes 2 and 0: -(ln 0.7 + ln 0.5) / 2
    proba = [[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]]
    assert log_loss([2, 0], proba) == pytest.approx(-(math.log(0.7) + math.log(0.5)) / 2)
    # a certain miss is clipped to eps = 1e-15: -ln(1e-15) = 15 ln 10
    assert log_loss([1], [0.0]) == pytest.approx(15 * math.log(10))


def test_brier_score_by_hand():
    # (0.9 - 1)^2 + (0.2 - 0)^2 + (0.6 - 1)^2 = 0.01 + 0.04 + 0.16 = 0.21; / 3 = 0.07
    assert brier_score([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(0.07)


def test_reliability_table_and_ece_by_hand():
    table = reliability_table([0, 1, 0, 1, 1], [0.05, 0.15, 0.12, 0.95, 1.0], n_bins=10)
    assert [row["count"] for row in table] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # 1.0 -> last bin
    assert table[0]["mean_predicted"] == pytest.approx(0.05)
    assert table[0]["observed_frequency"] == 0.0
    assert table[1]["mean_predicted"] == pytest.approx((0.15 + 0.12) / 2)  # 0.135
    assert table[1]["observed_frequency"] == pytest.approx(0.5)
    assert table[9]["mean_predicted"] == pytest.approx(0.975)
    assert table[9]["observed_frequency"] == 1.0
    assert table[4]["mean_predicted"] is None and table[4]["observed_frequency"] is None
    assert (table[3]["lower"], table[3]["upper"]) == pytest.approx((0.3, 0.4))
    # ECE = (1 * |0 - 0.05| + 2 * |0.5 - 0.135| + 2 * |1 - 0.975|) / 5 = (0.05 + 0.73 + 0.05) / 5
    assert expected_calibration_error(table) == pytest.approx(0.166)


def test_probability_metrics_score_the_long_class_of_ternary_labels():
    y = np.array([2, 0, 1, 2])
    proba = np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4]])
    m = probability_metrics(y, proba, n_bins=5)
    # event = class 2 (long): P = [0.7, 0.1, 0.3, 0.4], hit = [1, 0, 0, 1]; positives {0.7, 0.4}
    # beat every negative {0.1, 0.3} -> AUC 1
    assert m["auc"] == 1.0 and m["event_rate"] == 0.5
    assert m["brier"] == pytest.approx((0.09 + 0.01 + 0.09 + 0.36) / 4)
    assert m["log_loss"] == pytest.approx(-np.log([0.7, 0.6, 0.5, 0.4]).mean())


def test_metrics_reject_mismatched_lengths():
    with pytest.raises(ValueError, match="y_true"):
        brier_score([1, 0], [0.5])


# -- walk-forward --------------------------------------------------------------------------------
HORIZON = 5
SPEC = TrainSpec(
    name="wf",
    data="synthetic",
    model=ModelSpec(hidden=(8,)),
    labels=LabelSpec(horizon=HORIZON),
    epochs=2,
    batch_size=256,
    patience=1,
)
RULES = ("sma_cross", "rsi", "donchian_breakout")
SETTINGS = Settings()


def bars_2500(seed: int = 3) -> pd.DataFrame:
    return generate_bars(2500, timeframe="5m", seed=seed)


def evaluate(bars: pd.DataFrame, **kwargs):
    return walk_forward_evaluate(bars, SPEC, SETTINGS, n_folds=2, rule_strategies=RULES, **kwargs)


@pytest.fixture(scope="module")
def result():
    return evaluate(bars_2500())


def test_blocks_are_in_time_order_with_purge_gaps_of_the_label_horizon(result):
    step = pd.Timedelta("5min")
    for fold in result.folds:
        p = fold.periods
        for earlier, later in (("train", "val"), ("val", "calib"), ("calib", "test")):
            gap = (pd.Timestamp(p[later]["start"]) - pd.Timestamp(p[earlier]["end"])) / step
            # the last label of `earlier` looks HORIZON bars ahead: it must end before `later`
            assert gap == HORIZON + 1, (fold.number, earlier, later)
    tests = [f.periods["test"] for f in result.folds]
    assert pd.Timestamp(tests[1]["start"]) - pd.Timestamp(tests[0]["end"]) == step  # consecutive


def test_later_bars_cannot_change_earlier_decisions():
    """Scramble every bar from fold 0's calib block on: training and the threshold must not move.
    Then scramble only from its test block on: the calibration must not move either."""
    bars = bars_2500()
    base = evaluate(bars)
    fold = base.folds[0]

    def scrambled_from(start: str) -> pd.DataFrame:
        out = bars.copy()
        later = out.index >= pd.Timestamp(start)
        rng = np.random.default_rng(11)
        factor = np.exp(np.cumsum(rng.normal(0, 0.02, later.sum())))
        out.loc[later, ["open", "high", "low", "close"]] *= factor[:, None]
        out.loc[later, "volume"] *= rng.uniform(0.1, 10.0, later.sum())
        out.attrs = dict(bars.attrs)
        return out

    after_val = evaluate(scrambled_from(fold.periods["calib"]["start"])).folds[0]
    assert after_val.training["val_loss"] == fold.training["val_loss"]
    assert after_val.training["best_epoch"] == fold.training["best_epoch"]
    assert after_val.threshold == fold.threshold
    assert after_val.metrics["uncalibrated"]["auc"] != fold.metrics["uncalibrated"]["auc"]
    after_calib = evaluate(scrambled_from(fold.periods["test"]["start"])).folds[0]
    assert after_calib.calibration == fold.calibration
    assert after_calib.threshold == fold.threshold


def test_metrics_before_and_after_calibration_and_a_base_rate_reference(result):
    for fold in result.folds:
        assert set(fold.metrics) == {"uncalibrated", "calibrated", "base_rate"}
        for metrics in fold.metrics.values():
            assert metrics["n"] == fold.periods["test"]["rows"]
            assert sum(row["count"] for row in metrics["reliability"]) == metrics["n"]
            assert 0.0 <= metrics["brier"] <= 1.0 and metrics["log_loss"] > 0
        assert fold.metrics["base_rate"]["auc"] == 0.5  # a constant ranks nothing
        assert fold.calibration["method"] == "platt"


def test_economic_test_trades_the_test_bars_through_run_backtest(result):
    bars = bars_2500()
    for fold in result.folds:
        start, end = (pd.Timestamp(fold.periods["test"][k]) for k in ("start", "end"))
        for curve in fold.equity.values():
            assert curve.index[0] == start and curve.index[-1] == end
        # the same fold model, re-run by hand: targets from all bars up to the test end, traded
        # on the test bars only
        strategy = MLSignal.from_loaded(fold.model, threshold=fold.threshold)
        history = bars.loc[:end]
        n_test = len(bars.loc[start:end])
        targets = strategy.target_positions(history)[-n_test:]
        rerun = run_backtest(bars.loc[start:end], GivenTargets(targets), SETTINGS)
        assert rerun.metrics["final_equity"] == fold.economic["ml_signal"]["final_equity"]
        # On a random walk the validation-chosen threshold is often 1.0 (no edge: no trades), so
        # the same path is also run with a threshold that trades about half the test bars.
        median = float(np.nanmedian(strategy.probabilities(history)[-n_test:, -1]))
        busy = MLSignal.from_loaded(fold.model, threshold=median).target_positions(history)
        busy_run = run_backtest(bars.loc[start:end], GivenTargets(busy[-n_test:]), SETTINGS)
        assert busy_run.metrics["n_trades"] > 0 and busy_run.metrics["fees_paid"] > 0
        bh = run_backtest(bars.loc[start:end], _buy_and_hold(), SETTINGS)
        assert fold.economic["buy_and_hold"]["total_return"] == bh.metrics["total_return"]
        best = fold.economic["best_rule"]
        sharpes = best["in_sample_sharpes"]
        assert set(sharpes) == set(RULES) and best["strategy"] in RULES
        finite = [v for v in sharpes.values() if v is not None]
        assert best["in_sample_sharpe"] == max(finite)


class GivenTargets(MLSignal):
    """ml_signal's name and parameters with targets computed beforehand."""

    def __init__(self, targets: np.ndarray) -> None:
        super().__init__({"model": "walk-forward"})
        self.given = targets

    def target_positions(self, bars, allow_short=False):
        return self.given


def _buy_and_hold():
    from n1v1.strategies.trend import BuyAndHold

    return BuyAndHold()


def test_result_is_strict_json_with_a_summary(result, tmp_path):
    path = result.write_json(tmp_path / "eval.json")
    data = json.loads(path.read_text())
    assert len(data["folds"]) == 2 and data["config"]["purge"] == HORIZON
    auc = data["summary"]["uncalibrated.auc"]
    assert auc["per_fold"] == [f.metrics["uncalibrated"]["auc"] for f in result.folds]
    assert auc["mean"] == pytest.approx(np.mean(auc["per_fold"]))
    assert set(data["folds"][0]["equity"]) == {"ml_signal", "buy_and_hold", "best_rule"}


def test_html_report_has_tables_reliability_and_equity_charts(result, tmp_path):
    from n1v1.ml.report import write_evaluation_report

    page = write_evaluation_report(tmp_path / "r.html", result, title="WF <test>").read_text()
    assert "WF &lt;test&gt;" in page and "<script src" not in page
    assert page.count('id="fold-') == 2
    charts = chart_specs(page)
    assert list(charts) == [
        "fold-0-reliability",
        "fold-0-equity",
        "fold-1-reliability",
        "fold-1-equity",
    ]
    for fold in result.folds:
        equity = charts[f"fold-{fold.number}-equity"]["series"]
        names = [s["name"] for s in equity]  # ml_signal against buy-and-hold and the best rule
        assert names[:2] == ["ml_signal", "buy_and_hold"] and names[2].startswith("best_rule (")
        assert equity[0]["data"][-1][1] == pytest.approx(float(fold.equity["ml_signal"].iloc[-1]))
        diagonal, *curves = charts[f"fold-{fold.number}-reliability"]["series"]
        assert diagonal["data"][0] == [0.0, 0.0] and diagonal["data"][-1] == [1.0, 1.0]
        assert len(diagonal["data"]) == 1001  # every 0.001: x positions are true on the chart
        assert [c["name"] for c in curves] == ["uncalibrated", "calibrated"]
        bins = [b for b in fold.metrics["calibrated"]["reliability"] if b["count"]]
        assert sorted(r[1] for r in curves[1]["data"]) == pytest.approx(
            sorted(b["observed_frequency"] for b in bins)
        )
    assert "<svg" not in markup(page)  # no hand-drawn chart left


def test_html_report_shades_a_gap_in_a_folds_test_bars(result, tmp_path):
    from dataclasses import replace

    from n1v1.ml.report import write_evaluation_report

    fold = result.folds[0]
    # move the second half of the fold's test bars one day later: one hole of about 288 5m bars
    index = fold.equity["ml_signal"].index
    half = len(index) // 2
    shifted = index[:half].append(index[half:] + pd.Timedelta(days=1))
    equity = {name: series.set_axis(shifted) for name, series in fold.equity.items()}
    gappy = replace(result, folds=[replace(fold, equity=equity), *result.folds[1:]])
    page = write_evaluation_report(tmp_path / "g.html", gappy, title="gaps").read_text()
    equity = chart_specs(page)["fold-0-equity"]
    assert len(markers(equity, "gap")) == 1
    assert all(len(breaks(series)) == 1 for series in equity["series"])
    plain = write_evaluation_report(tmp_path / "p.html", result, title="plain").read_text()
    equity = chart_specs(plain)["fold-0-equity"]
    assert markers(equity, "gap") == [] and all(breaks(s) == [] for s in equity["series"])


def test_too_few_bars_is_a_clear_error():
    with pytest.raises(EvaluationError, match="too few"):
        walk_forward_evaluate(generate_bars(100, timeframe="5m"), SPEC, n_folds=4)


def test_cli_evaluate_writes_json_and_html(tmp_path, capsys, monkeypatch):
    from n1v1.cli import main
    from n1v1.ml.features import feature_hash, feature_names
    from n1v1.ml.models import build_model
    from n1v1.ml.registry import ModelRegistry
    from n1v1.ml.scaling import Standardizer

    n_features = len(feature_names(SPEC.features))
    card = {
        "name": "wf",
        "model_spec": SPEC.model.model_dump(mode="json"),
        "feature_spec": SPEC.features.model_dump(mode="json"),
        "feature_names": feature_names(SPEC.features),
        "feature_hash": feature_hash(SPEC.features),
        "label_spec": SPEC.labels.model_dump(mode="json"),
        "n_features": n_features,
        "n_classes": 2,
        "data": {"timeframe": "5m"},
        "hyperparameters": {"lr": 1e-3, "batch_size": 256, "epochs_max": 2, "patience": 1},
        "metrics": {"val_auc": 0.5},
    }
    net = build_model(SPEC.model, n_features, 2, seed=0)
    scaler = Standardizer().fit(np.random.default_rng(0).normal(size=(10, n_features)))
    ModelRegistry(tmp_path / "models").register(
        "wf", state_dict=net.state_dict(), scaler=scaler.to_dict(), card=card
    )
    csv = tmp_path / "bars.csv"
    bars_2500().rename_axis("timestamp").to_csv(csv)
    monkeypatch.setenv("N1V1_ML__MODEL_ROOT", str(tmp_path / "models"))
    out_json, out_html = tmp_path / "e.json", tmp_path / "e.html"
    args = ["evaluate", "--model", "wf", "--version", "latest", "--data", str(csv)]
    args += ["--folds", "2", "--mode", "expanding", "--json", str(out_json)]
    code = main([*args, "--report", str(out_html)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "fold 1:" in out and "best rule" in out and f"Wrote {out_json}" in out
    data = json.loads(out_json.read_text())
    assert data["config"]["mode"] == "expanding" and data["config"]["version"] == "v0001"
    assert {f["periods"]["train"]["start"] for f in data["folds"]} == {
        data["folds"][0]["periods"]["train"]["start"]
    }  # expanding: every fold trains from the first row
    assert out_html.read_text().count('id="fold-') == 2
    code = main(["evaluate", "--model", "nothere", "--data", str(csv)])
    assert code == 2 and "n1v1: error: model 'nothere'" in capsys.readouterr().err


def test_ternary_sequence_model_with_isotonic_calibration_and_shorts():
    spec = SPEC.model_copy(
        update={
            "model": ModelSpec(kind="tcn", window=8, channels=4, levels=2),
            "labels": LabelSpec(horizon=HORIZON, kind="ternary", fee=0.0005),
            "epochs": 1,
        }
    )
    settings = Settings.model_validate({"risk": {"allow_short": True}})
    out = walk_forward_evaluate(
        bars_2500(), spec, settings, n_folds=2, rule_strategies=("sma_cross",),
        calibration="isotonic",
    )  # fmt: skip
    for fold in out.folds:
        assert fold.calibration["method"] == "isotonic"
        assert len(fold.calibration["calibrators"]) == 3  # one per class, then renormalised
        assert fold.metrics["uncalibrated"]["n"] == fold.periods["test"]["rows"]
        assert math.isfinite(fold.metrics["calibrated"]["log_loss"])
    json.dumps(out.to_dict(), allow_nan=False)


def test_a_test_block_across_a_session_break_carries_a_caution():
    from n1v1.ml.evaluation import _session_notes

    assert _session_notes(np.array([2, 2, 2])) == []  # one session: nothing to say
    (note,) = _session_notes(np.array([0, 0, 1, 1, 1]))
    assert note.startswith("the test rows span 2 sessions (holes of more than 60 bars")
    assert "price moves no strategy could have traded" in note
