"""Batched inference: a registry round trip gives identical predictions, the scaler and softmax are
applied as written, sequence models window correctly, and bad cards or scalers are named."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from n1v1.ml.inference import LoadedModel, load_model
from n1v1.ml.models import ModelSpec, build_model
from n1v1.ml.registry import ModelRegistry, RegistryError
from n1v1.ml.scaling import Standardizer

F = 4


def _features(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(loc=[100.0, -3.0, 0.5, 10.0], scale=[5.0, 1.0, 0.1, 3.0], size=(n, F))


def _in_memory(spec: ModelSpec, n_classes: int = 2, seed: int = 0) -> LoadedModel:
    scaler = Standardizer().fit(_features(500, seed=99))
    model = build_model(spec, F, n_classes, seed=seed).eval()
    return LoadedModel(
        name="m",
        version="v0000",
        card={},
        spec=spec,
        feature_spec_dict={},
        scaler=scaler,
        model=model,
        n_classes=n_classes,
    )


def _register(reg: ModelRegistry, lm: LoadedModel, **card_extra) -> str:
    card = {
        "model_spec": lm.spec.model_dump(),
        "feature_spec": {"rsi_period": 14},
        "feature_names": [f"f{i}" for i in range(F)],
        "n_features": F,
        "n_classes": lm.n_classes,
        "metrics": {"val_auc": 0.55},
        **card_extra,
    }
    return reg.register(
        "m", state_dict=lm.model.state_dict(), scaler=lm.scaler.to_dict(), card=card
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reseal(vdir: Path, filename: str, content: bytes) -> None:
    """Rewrite a file and its checksums (a buggy writer): only parsing can catch it."""
    (vdir / filename).write_bytes(content)
    card = json.loads((vdir / "card.json").read_text())
    if filename != "card.json":
        card["files"][filename] = _sha(vdir / filename)
        (vdir / "card.json").write_text(json.dumps(card))
    (vdir / "COMPLETE").write_text(_sha(vdir / "card.json"))


def _edit_card(vdir: Path, **changes) -> None:
    card = json.loads((vdir / "card.json").read_text())
    card.update(changes)
    _reseal(vdir, "card.json", json.dumps(card).encode())


@pytest.fixture
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.mark.parametrize(("kind", "n_classes"), [("mlp", 2), ("mlp", 3), ("tcn", 2), ("gru", 3)])
def test_registry_round_trip_predicts_exactly_like_the_in_memory_model(reg, kind, n_classes):
    spec = ModelSpec(kind=kind, window=6, channels=8, levels=2, hidden=(16, 8))
    original = _in_memory(spec, n_classes)
    version = _register(reg, original, threshold=0.6)
    reg.promote("m", version, force=True)  # untrained weights: nothing for the gate to judge
    loaded = load_model(reg, "m")
    assert (loaded.name, loaded.version, loaded.threshold) == ("m", "v0001", 0.6)
    assert loaded.feature_spec_dict == {"rsi_period": 14} and loaded.spec == spec
    assert not loaded.model.training
    X = _features(300, seed=1)
    expected = original.predict_proba(X)
    got = loaded.predict_proba(X)
    assert got.dtype == np.float64 and got.shape == (300, n_classes)
    np.testing.assert_array_equal(got, expected)
    assert np.isfinite(got[spec.window - 1 if kind != "mlp" else 0 :]).all()


def test_probabilities_follow_scaler_relu_and_softmax_by_hand():
    """One feature, hidden=(1,): z = (x - 2) / 4, h = relu(1*z + 0), logits = [h, -h].
    x = 6: z = 1, h = 1, P = [e^1, e^-1] / (e^1 + e^-1) = [1/(1+e^-2), 1/(1+e^2)]
    x = -2: z = -1, h = 0, P = [0.5, 0.5]."""
    spec = ModelSpec(hidden=(1,), dropout=0.0)
    model = build_model(spec, 1, 2, seed=0).eval()
    with torch.no_grad():
        model.net[0].weight.fill_(1.0)
        model.net[0].bias.zero_()
        model.net[3].weight.copy_(torch.tensor([[1.0], [-1.0]]))
        model.net[3].bias.zero_()
    scaler = Standardizer.from_dict({"mean": [2.0], "scale": [4.0]})
    lm = LoadedModel("m", "v0001", {}, spec, {}, scaler, model, n_classes=2)
    p = lm.predict_proba(np.array([[6.0], [-2.0]]))
    long = 1.0 / (1.0 + math.exp(-2.0))
    np.testing.assert_allclose(p, [[long, 1.0 - long], [0.5, 0.5]], rtol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "tcn", "gru"])
def test_rows_sum_to_one_and_batch_size_does_not_change_results(kind):
    lm = _in_memory(ModelSpec(kind=kind, window=5, channels=8, levels=2))
    X = _features(103, seed=2)
    default = lm.predict_proba(X)
    lm.batch_size = 7  # 103 rows -> batches of 7 with a ragged last batch
    small = lm.predict_proba(X)
    start = 0 if kind == "mlp" else 4
    np.testing.assert_allclose(small[start:], default[start:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(default[start:].sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("kind", ["tcn", "gru"])
def test_sequence_row_t_is_the_model_on_the_window_ending_at_t(kind):
    spec = ModelSpec(kind=kind, window=5, channels=8, levels=2)
    lm = _in_memory(spec)
    X = _features(20, seed=3)
    p = lm.predict_proba(X)
    assert np.isnan(p[:4]).all() and np.isfinite(p[4:]).all()  # first window-1 rows have no window
    t = 11
    window = torch.from_numpy(lm.scaler.transform(X[t - 4 : t + 1])[None])  # rows 7..11
    with torch.no_grad():
        by_hand = torch.softmax(lm.model(window), dim=1).numpy()[0]
    np.testing.assert_allclose(p[t], by_hand, atol=1e-6)


def test_fewer_rows_than_a_window_are_all_nan():
    lm = _in_memory(ModelSpec(kind="gru", window=8, channels=4))
    p = lm.predict_proba(_features(5))
    assert p.shape == (5, 2) and np.isnan(p).all()


def test_a_non_finite_row_gives_nan_only_where_it_is_used():
    X = _features(30, seed=4)
    X[10, 2] = np.nan
    mlp = _in_memory(ModelSpec())
    p = mlp.predict_proba(X)
    assert np.isnan(p[10]).all() and np.isfinite(np.delete(p, 10, axis=0)).all()
    tcn = _in_memory(ModelSpec(kind="tcn", window=4, channels=8, levels=2))
    p = tcn.predict_proba(X)
    nan_rows = np.flatnonzero(np.isnan(p).any(axis=1))
    # rows 0..2: no full window; rows 10..13: windows that contain row 10
    assert nan_rows.tolist() == [0, 1, 2, 10, 11, 12, 13]


def test_wrong_feature_count_is_named():
    lm = _in_memory(ModelSpec())
    with pytest.raises(ValueError, match=rf"features: expected shape \[n, {F}\].*got \(3, 5\)"):
        lm.predict_proba(np.zeros((3, 5)))
    lm.batch_size = 0
    with pytest.raises(ValueError, match="batch_size"):
        lm.predict_proba(np.zeros((3, F)))


def test_threshold_defaults_to_one_half(reg):
    _register(reg, _in_memory(ModelSpec()))
    assert load_model(reg, "m", "latest").threshold == 0.5


def test_a_half_written_version_cannot_be_loaded(reg):
    _register(reg, _in_memory(ModelSpec()))
    (reg.root / "m" / "v0001" / "COMPLETE").unlink()
    with pytest.raises(RegistryError, match="m/v0001 is incomplete"):
        load_model(reg, "m", "v0001")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{oops", "scaler.json: invalid JSON"),
        (b'{"mean": [0, 0, 0, 0], "scale": [1, 1, 1, "x"]}', "scaler.json: scaler: 'scale'"),
        (b'{"mean": [0, 0], "scale": [1, 1]}', "scaler.json: has 2 features, .*says 4"),
    ],
)
def test_a_corrupt_scaler_is_named(reg, content, message):
    _register(reg, _in_memory(ModelSpec()))
    _reseal(reg.root / "m" / "v0001", "scaler.json", content)
    with pytest.raises(RegistryError, match=message):
        load_model(reg, "m", "v0001")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_spec": {"kind": "lstm"}}, r"card.json: 'model_spec': kind"),
        ({"model_spec": "mlp"}, r"card.json: 'model_spec' must be an object"),
        ({"n_features": "4"}, r"card.json: 'n_features' must be an int"),
        ({"n_classes": 1}, r"card.json: 'n_classes' must be an int >= 2"),
        ({"feature_spec": None}, r"card.json: 'feature_spec' must be an object"),
        ({"feature_names": ["a"]}, r"card.json: 'feature_names' must list 4"),
        ({"threshold": 1.5}, r"card.json: 'threshold' must be a number in \[0, 1\]"),
        ({"model_spec": {"kind": "gru"}}, r"model.pt: weights do not fit the model"),
    ],
)
def test_a_card_that_does_not_describe_a_loadable_model_is_named(reg, changes, message):
    _register(reg, _in_memory(ModelSpec()))
    _edit_card(reg.root / "m" / "v0001", **changes)
    with pytest.raises(RegistryError, match=message):
        load_model(reg, "m", "v0001")


def test_loading_does_not_disturb_the_callers_rng(reg):
    _register(reg, _in_memory(ModelSpec()))
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    load_model(reg, "m", "latest")
    assert torch.equal(torch.rand(2), expected)
