"""The torch models: shapes, causality, seeded initialisation, and weights-only save/load."""

from __future__ import annotations

import math

import pydantic
import pytest
import torch

from n1v1.ml.models import (
    ModelSpec,
    build_model,
    load_state_dict,
    read_state_dict,
    receptive_field,
    save_state_dict,
)
from n1v1.ml.registry import RegistryError

F = 5  # features in every test model


def _inputs(spec: ModelSpec, batch: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, F) if spec.kind == "mlp" else (batch, spec.window, F)
    return torch.randn(shape, generator=gen)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "lstm"},
        {"hidden": ()},
        {"hidden": (8, 0)},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"window": 0},
        {"channels": 0},
        {"kernel_size": 0},
        {"levels": 0},
        {"unknown": 1},
    ],
)
def test_model_spec_rejects_bad_values(bad):
    with pytest.raises(pydantic.ValidationError) as err:
        ModelSpec(**bad)
    assert next(iter(bad)) in str(err.value)


def test_model_spec_is_frozen():
    with pytest.raises(pydantic.ValidationError):
        ModelSpec().kind = "gru"


@pytest.mark.parametrize("kind", ["mlp", "tcn", "gru"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_every_kind_returns_logits_batch_by_classes(kind, n_classes):
    spec = ModelSpec(kind=kind, window=8, channels=6, levels=2, hidden=(7,))
    model = build_model(spec, F, n_classes, seed=0).eval()
    out = model(_inputs(spec, batch=4))
    assert out.shape == (4, n_classes)
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("kind", "shape"),
    [("mlp", (4, F, 1)), ("mlp", (4, F + 1)), ("tcn", (4, F)), ("gru", (4, 8, 3))],
)
def test_wrong_input_shape_is_a_clear_error(kind, shape):
    model = build_model(ModelSpec(kind=kind, window=8), F, 2, seed=0)
    with pytest.raises(ValueError, match=rf"{kind} input: expected shape .*F={F}"):
        model(torch.zeros(shape))


@pytest.mark.parametrize(("n_features", "n_classes"), [(0, 2), (F, 1), (2.0, 2), (True, 2)])
def test_build_model_rejects_bad_sizes(n_features, n_classes):
    with pytest.raises(ValueError, match=r"n_features|n_classes"):
        build_model(ModelSpec(), n_features, n_classes)


def test_mlp_is_linear_relu_dropout_with_the_hand_counted_parameters():
    model = build_model(ModelSpec(hidden=(64, 32), dropout=0.2), F, 2, seed=0)
    kinds = [type(m).__name__ for m in model.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    # weights + biases: 5*64 + 64 = 384, 64*32 + 32 = 2080, 32*2 + 2 = 66 -> 2530
    assert sum(p.numel() for p in model.parameters()) == 2530


@pytest.mark.parametrize("kind", ["mlp", "tcn", "gru"])
def test_seeded_initialisation_is_reproducible_and_leaves_the_global_rng_alone(kind):
    spec = ModelSpec(kind=kind, window=8)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(spec, F, 2, seed=7).state_dict()
    assert torch.equal(torch.rand(3), expected_next)  # the caller's RNG did not move
    b = build_model(spec, F, 2, seed=7).state_dict()
    c = build_model(spec, F, 2, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_without_a_seed_the_global_rng_decides():
    torch.manual_seed(5)
    a = build_model(ModelSpec(), F, 2).state_dict()
    torch.manual_seed(5)
    b = build_model(ModelSpec(), F, 2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kind", ["tcn", "gru"])
def test_sequence_models_are_causal(kind):
    """Changing inputs after step t leaves the hidden representation at steps <= t unchanged."""
    spec = ModelSpec(kind=kind, window=16, channels=8, levels=3, dropout=0.0)
    model = build_model(spec, F, 2, seed=0).eval()
    x = _inputs(spec, batch=3, seed=1)
    t = 9
    changed = x.clone()
    changed[:, t + 1 :, :] = torch.randn(
        3, 16 - t - 1, F, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        h, h_changed = model.encode(x), model.encode(changed)
    assert h.shape == (3, 16, spec.channels)
    assert torch.equal(h[:, : t + 1], h_changed[:, : t + 1])
    # ... and the later steps do see the change (the test could fail if the model ignored inputs)
    assert not torch.allclose(h[:, t + 1 :], h_changed[:, t + 1 :])


def test_tcn_receptive_field_matches_the_hand_formula():
    """k=3, two levels: dilations 1 and 2, two convs each, every conv adds (k-1)*d steps:
    1 + 2*(2*1) + 2*(2*2) = 13 bars. Bar T-13 reaches the last output, bar T-14 cannot."""
    spec = ModelSpec(kind="tcn", window=20, channels=16, kernel_size=3, levels=2, dropout=0.0)
    assert receptive_field(spec) == 13
    model = build_model(spec, F, 2, seed=0).eval()
    x = _inputs(spec, batch=2, seed=3)
    with torch.no_grad():
        base = model(x)
        inside, outside = x.clone(), x.clone()
        inside[:, 20 - 13, :] += 5.0
        outside[:, 20 - 14, :] += 5.0
        assert not torch.allclose(model(inside), base)
        assert torch.equal(model(outside), base)


@pytest.mark.parametrize("kind", ["mlp", "tcn", "gru"])
def test_dropout_only_acts_in_training_mode(kind):
    spec = ModelSpec(kind=kind, window=8, dropout=0.5)
    model = build_model(spec, F, 2, seed=0)
    x = _inputs(spec, batch=16)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        torch.manual_seed(0)
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("kind", ["mlp", "tcn", "gru"])
def test_saved_weights_load_back_to_identical_outputs(tmp_path, kind):
    spec = ModelSpec(kind=kind, window=8)
    model = build_model(spec, F, 3, seed=0).eval()
    save_state_dict(model, tmp_path / "model.pt")
    fresh = build_model(spec, F, 3, seed=1).eval()
    load_state_dict(fresh, tmp_path / "model.pt")
    x = _inputs(spec)
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


def test_weights_for_another_architecture_are_refused_naming_the_file(tmp_path):
    path = tmp_path / "model.pt"
    save_state_dict(build_model(ModelSpec(hidden=(8,)), F, 2, seed=0), path)
    with pytest.raises(RegistryError, match=rf"{path}: weights do not fit the model"):
        load_state_dict(build_model(ModelSpec(hidden=(9,)), F, 2), path)


SIDE_EFFECTS: list[str] = []


def _record_side_effect() -> str:
    SIDE_EFFECTS.append("ran")
    return "payload"


class Payload:
    """Unpickling this would call _record_side_effect: exactly what weights_only must prevent."""

    def __reduce__(self):
        return (_record_side_effect, ())


def test_a_pickled_object_is_refused_and_never_executed(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"layer.weight": torch.zeros(2), "extra": Payload()}, path)
    SIDE_EFFECTS.clear()
    with pytest.raises(RegistryError, match=rf"{path}: refused to load weights"):
        read_state_dict(path)
    assert SIDE_EFFECTS == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a torch file", "refused to load weights"),
        (b"", "refused to load weights"),
    ],
)
def test_garbage_weight_files_are_refused_naming_the_file(tmp_path, content, message):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(RegistryError, match=rf"{path}: {message}"):
        read_state_dict(path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    torch.save([torch.zeros(1), math.pi], path)
    with pytest.raises(RegistryError, match=rf"{path}: expected a state_dict"):
        read_state_dict(path)


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(RegistryError, match=r"missing\.pt: weights file not found"):
        read_state_dict(tmp_path / "missing.pt")
