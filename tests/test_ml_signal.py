"""The ml_signal strategy: registry model -> features -> probabilities -> targets, causally, with
the model root from settings only, the feature hash checked and the model loaded once."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from n1v1.config import Settings
from n1v1.ml.features import FeatureSpec, build_features, feature_hash, feature_names
from n1v1.ml.inference import load_model
from n1v1.ml.models import ModelSpec, build_model
from n1v1.ml.registry import ModelRegistry
from n1v1.ml.scaling import Standardizer
from n1v1.strategies import StrategyError, create_strategy
from n1v1.strategies.ml_signal import MLSignal

# Short periods keep the warm-up small (ADX needs 2 * 5 - 1 = 9 rows, the largest here).
FEATURES = FeatureSpec(
    return_horizons=(1, 3),
    volatility_horizons=(5,),
    rsi_period=5,
    macd=(3, 6, 2),
    atr_period=5,
    bollinger_period=5,
    volume_z_period=6,
    adx_period=5,
)
CUTS = (1, 5, 9, 10, 11, 40, 97, 150, 299)


def random_walk_bars(n: int = 300, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_t(3, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, n))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, n))
    volume = rng.lognormal(5.0, 0.6, n)
    index = pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


BARS = random_walk_bars()


def register_tiny(
    root, *, kind: str = "mlp", n_classes: int = 2, threshold: float = 0.5, **card_extra
) -> str:
    """An untrained (seeded) tiny model: its probabilities vary with the features, which is all
    the strategy's plumbing needs."""
    raw = build_features(BARS, FEATURES).to_numpy()
    scaler = Standardizer().fit(raw[np.isfinite(raw).all(axis=1)])
    spec = ModelSpec(kind=kind, hidden=(8,), window=4, channels=4, kernel_size=2, levels=2)
    net = build_model(spec, raw.shape[1], n_classes, seed=1)
    card = {
        "name": "tiny",
        "model_spec": spec.model_dump(mode="json"),
        "feature_spec": FEATURES.model_dump(mode="json"),
        "feature_names": feature_names(FEATURES),
        "feature_hash": feature_hash(FEATURES),
        "label_spec": {"horizon": 3, "kind": "binary" if n_classes == 2 else "ternary"},
        "n_features": raw.shape[1],
        "n_classes": n_classes,
        "threshold": threshold,
        "metrics": {"val_auc": 0.5},
        **card_extra,
    }
    registry = ModelRegistry(root)
    version = registry.register(
        "tiny", state_dict=net.state_dict(), scaler=scaler.to_dict(), card=card
    )
    registry.promote("tiny", version, force=True)
    return version


def settings_for(root) -> Settings:
    return Settings.model_validate({"ml": {"model_root": str(root)}})


def median_thresholds(strategy: MLSignal) -> tuple[float, float]:
    """Thresholds at the median probability, so both sides of each threshold occur."""
    proba = strategy.probabilities(BARS)
    ready = np.isfinite(proba).all(axis=1)
    return float(np.median(proba[ready, -1])), float(np.median(proba[ready, 0]))


@pytest.mark.parametrize(
    ("kind", "n_classes", "allow_short"),
    [("mlp", 2, False), ("mlp", 3, True), ("tcn", 2, False), ("gru", 3, True)],
)
def test_truncated_bars_give_the_same_earlier_targets(tmp_path, kind, n_classes, allow_short):
    register_tiny(tmp_path, kind=kind, n_classes=n_classes)
    probe = MLSignal({"model": "tiny"}, settings=settings_for(tmp_path))
    long_t, short_t = median_thresholds(probe)
    strategy = MLSignal(
        {"model": "tiny", "threshold": long_t, "short_threshold": short_t},
        settings=settings_for(tmp_path),
    )
    full = strategy.target_positions(BARS, allow_short=allow_short)
    assert np.count_nonzero(np.diff(full)) >= 10  # it trades, so the check is not vacuous
    if allow_short:
        assert (full == -1).any() and (full == 1).any()
    for k in CUTS:
        part = strategy.target_positions(BARS.iloc[:k], allow_short=allow_short)
        np.testing.assert_array_equal(part, full[:k], err_msg=f"{kind}: differs when cut at {k}")


def test_binary_targets_follow_the_threshold_rule_and_are_flat_in_warmup(tmp_path):
    register_tiny(tmp_path, threshold=0.5)
    strategy = MLSignal({"model": "tiny"}, settings=settings_for(tmp_path))
    loaded = load_model(ModelRegistry(tmp_path), "tiny")
    proba = loaded.predict_proba(build_features(BARS, FEATURES).to_numpy())
    # the rule written out: +1 where P(long) > the card's 0.5, 0 elsewhere and where not ready
    expected = np.where(np.nan_to_num(proba[:, 1], nan=0.0) > 0.5, 1, 0)
    got = strategy.target_positions(BARS, allow_short=True)  # binary: never short
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, expected)
    assert strategy.warmup == 9  # adx(5) is finite from row 2 * 5 - 1 = 9
    assert not got[: strategy.warmup].any()
    assert set(np.unique(got)) <= {0, 1}


def test_threshold_parameter_overrides_the_card(tmp_path):
    register_tiny(tmp_path, threshold=0.999)  # the card's threshold: almost never long
    settings = settings_for(tmp_path)
    assert not MLSignal({"model": "tiny"}, settings=settings).target_positions(BARS).any()
    opened = MLSignal({"model": "tiny", "threshold": 0.0}, settings=settings)
    assert opened.target_positions(BARS)[9:].all()  # P > 0 wherever the features are ready


def test_ternary_short_threshold_defaults_to_threshold_and_shorts_need_allow_short(tmp_path):
    register_tiny(tmp_path, n_classes=3)
    settings = settings_for(tmp_path)
    long_t, _ = median_thresholds(MLSignal({"model": "tiny"}, settings=settings))
    strategy = MLSignal({"model": "tiny", "threshold": long_t}, settings=settings)
    proba = strategy.probabilities(BARS)
    p_long, p_short = (np.nan_to_num(proba[:, c], nan=0.0) for c in (2, 0))
    go_long, go_short = p_long > long_t, p_short > long_t  # short_threshold None -> threshold
    expected = np.where(go_long & ~go_short, 1, np.where(go_short & ~go_long, -1, 0))
    np.testing.assert_array_equal(strategy.target_positions(BARS, allow_short=True), expected)
    np.testing.assert_array_equal(
        strategy.target_positions(BARS, allow_short=False), np.where(go_long, 1, 0)
    )


def test_model_root_comes_from_the_environment_not_from_parameters(tmp_path, monkeypatch):
    register_tiny(tmp_path)
    monkeypatch.setenv("N1V1_ML__MODEL_ROOT", str(tmp_path))
    strategy = create_strategy("ml_signal", {"model": "tiny", "threshold": 0.0})
    assert strategy.target_positions(BARS)[9:].all()
    with pytest.raises(StrategyError, match="unknown parameter 'model_root'"):
        create_strategy("ml_signal", {"model": "tiny", "model_root": str(tmp_path)})


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"model": "../etc"}, "invalid model name '../etc'"),
        ({"model": "Tiny"}, "invalid model name 'Tiny'"),
        ({"model": "tiny", "version": "v1"}, "invalid version 'v1'"),
        ({"model": "tiny", "version": "../v0001"}, "invalid version"),
        ({"model": "tiny", "threshold": 1.5}, "threshold=1.5 out of bounds"),
        ({}, "parameter model"),
    ],
)
def test_bad_parameters_are_rejected_with_the_field_named(params, fragment):
    with pytest.raises(StrategyError, match=fragment):
        MLSignal(params)


def test_unknown_model_error_names_the_model_and_the_root(tmp_path):
    strategy = MLSignal({"model": "nothere"}, settings=settings_for(tmp_path))
    with pytest.raises(StrategyError) as err:
        strategy.target_positions(BARS)
    assert "'nothere'" in str(err.value) and str(tmp_path) in str(err.value)


def test_feature_hash_mismatch_is_an_error_that_explains(tmp_path):
    register_tiny(tmp_path, feature_hash="0123456789abcdef")
    strategy = MLSignal({"model": "tiny"}, settings=settings_for(tmp_path))
    with pytest.raises(StrategyError, match="trained on features with hash '0123456789abcdef'"):
        strategy.target_positions(BARS)


def test_the_model_is_loaded_once_per_instance(tmp_path, monkeypatch):
    import n1v1.ml.inference as inference

    register_tiny(tmp_path)
    calls = []
    real = inference.load_model

    def counting(*args, **kwargs):
        calls.append(args[1:])
        return real(*args, **kwargs)

    monkeypatch.setattr(inference, "load_model", counting)
    strategy = MLSignal({"model": "tiny", "version": "latest"}, settings=settings_for(tmp_path))
    first = strategy.target_positions(BARS)
    second = strategy.target_positions(BARS.iloc[:100])
    assert strategy.warmup == 9
    assert calls == [("tiny", "latest")]
    np.testing.assert_array_equal(second, first[:100])


def test_version_resolves_once_and_a_pinned_version_stays(tmp_path):
    first = register_tiny(tmp_path)
    register_tiny(tmp_path)  # v0002 is promoted now
    settings = settings_for(tmp_path)
    assert MLSignal({"model": "tiny"}, settings=settings).loaded_model().version == "v0002"
    pinned = MLSignal({"model": "tiny", "version": first}, settings=settings)
    assert pinned.loaded_model().version == "v0001"


def test_runs_through_run_backtest_like_any_strategy(tmp_path):
    from n1v1.backtest.runner import run_backtest

    register_tiny(tmp_path)
    settings = settings_for(tmp_path)
    long_t, _ = median_thresholds(MLSignal({"model": "tiny"}, settings=settings))
    strategy = MLSignal({"model": "tiny", "threshold": long_t}, settings=settings)
    fast = run_backtest(BARS, strategy, settings, engine="fast")
    event = run_backtest(BARS, strategy, settings, engine="event")
    assert fast.metrics["n_trades"] > 0
    assert fast.metrics["n_trades"] == event.metrics["n_trades"]
    assert fast.metrics["final_equity"] == pytest.approx(event.metrics["final_equity"], rel=1e-9)


def test_importing_the_strategies_does_not_import_torch():
    code = "import sys, n1v1.strategies; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backtest_settings_choose_the_registry_root(tmp_path):
    """`run_backtest` hands its settings to the strategy: a config file's ml.model_root (or
    N1V1_ML__MODEL_ROOT) is the registry ml_signal reads, whatever the process env says."""
    from n1v1.backtest.runner import run_backtest

    register_tiny(tmp_path / "models")
    here = Settings.model_validate({"ml": {"model_root": str(tmp_path / "models")}})
    result = run_backtest(BARS, create_strategy("ml_signal", {"model": "tiny"}), here)
    assert result.metrics["n_bars"] == len(BARS)
    elsewhere = Settings.model_validate({"ml": {"model_root": str(tmp_path / "empty")}})
    with pytest.raises(StrategyError, match="empty"):
        run_backtest(BARS, create_strategy("ml_signal", {"model": "tiny"}), elsewhere)


# -- the training window, the bar size and session breaks (issue 9) ------------------------------
def _stamp(i: int) -> str:
    return BARS.index[i].isoformat()


def register_with_window(root) -> None:
    """A card that says: trained on bars 0..99, validated on 110..149, 5-minute bars, labels 3
    bars ahead, so the last validation label reads bar 152 (149 + 3)."""
    register_tiny(
        root,
        split={"train": [_stamp(0), _stamp(99)], "val": [_stamp(110), _stamp(149)]},
        data={"timeframe": "5m"},
    )


def test_bars_overlapping_the_training_window_are_refused_naming_both_ranges(tmp_path):
    register_with_window(tmp_path)
    strategy = MLSignal({"model": "tiny"}, settings=settings_for(tmp_path))
    with pytest.raises(StrategyError) as err:
        strategy.target_positions(BARS)
    message = str(err.value)
    assert f"the bars {_stamp(0)} .. {_stamp(299)} overlap the window tiny/v0001" in message
    assert f"({_stamp(0)} .. {_stamp(152)}, the last validation label included)" in message
    assert "allow_in_sample=true" in message
    # bar 152 is the last one a label used: still refused; from bar 153 on the model never saw it
    with pytest.raises(StrategyError, match="overlap"):
        strategy.target_positions(BARS.iloc[152:])
    assert strategy.target_positions(BARS.iloc[153:]).shape == (147,)
    assert not any("IN-SAMPLE" in note for note in strategy.notes)


def test_allow_in_sample_runs_and_the_result_says_so_everywhere(tmp_path, capsys, monkeypatch):
    import json

    from n1v1.cli import main

    register_with_window(tmp_path / "models")
    data = tmp_path / "bars.csv"
    BARS.to_csv(data)
    monkeypatch.setenv("N1V1_ML__MODEL_ROOT", str(tmp_path / "models"))
    argv = ["backtest", "--data", str(data), "--strategy", "ml_signal", "--param", "model=tiny"]
    assert main(argv) == 2
    assert "overlap the window tiny/v0001" in capsys.readouterr().err
    out_json, out_html = tmp_path / "run.json", tmp_path / "run.html"
    argv += ["--param", "allow_in_sample=true", "--json", str(out_json), "--report", str(out_html)]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())  # notes are wrapped at 100 columns
    note = (
        f"IN-SAMPLE: ml_signal was run although the bars {_stamp(0)} .. {_stamp(299)} overlap "
        "the window"
    )
    assert f"note: {note}" in printed
    assert any(n.startswith(note) for n in json.loads(out_json.read_text())["meta"]["notes"])
    assert note in out_html.read_text()


def test_a_model_refuses_bars_of_another_size(tmp_path):
    register_tiny(tmp_path, data={"timeframe": "1m"})
    strategy = MLSignal({"model": "tiny"}, settings=settings_for(tmp_path))
    with pytest.raises(StrategyError, match="trained on 1m bars, these bars are 5m apart"):
        strategy.target_positions(BARS)


def test_after_a_session_break_the_model_stands_aside_for_its_warmup(tmp_path):
    # bars 150.. start one day later: a hole of 287 missing 5-minute bars (> 60) is a break
    index = BARS.index.where(np.arange(len(BARS)) < 150, BARS.index + pd.Timedelta("1D"))
    gapped = BARS.set_axis(pd.DatetimeIndex(index, name="timestamp"))
    register_tiny(tmp_path)
    strategy = MLSignal({"model": "tiny", "threshold": 0.0}, settings=settings_for(tmp_path))
    targets = strategy.target_positions(gapped)
    assert strategy.warmup == 9
    assert not targets[:9].any() and targets[9:150].all()  # warm-up at the start, then long
    assert not targets[150:159].any()  # 9 bars after the break: their look-back spans it
    assert targets[159:].all()


def test_a_model_that_failed_the_gate_is_noted_on_the_result(tmp_path):
    from n1v1.backtest.runner import run_backtest

    register_tiny(tmp_path)  # val_auc 0.5 and no economic test: promoted only by force
    result = run_backtest(BARS, MLSignal({"model": "tiny"}), settings_for(tmp_path))
    assert any(
        n.startswith(
            "UNVALIDATED MODEL: tiny/v0001 did not pass the promotion gate (forced, failed gate: "
            "chance, buy_and_hold): chance: "
        )
        for n in result.notes
    ), result.notes
