"""Standardizer: fitted on training rows only, exact JSON round trip, strict from_dict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from n1v1.ml.scaling import Standardizer
from n1v1.ml.splits import train_val_split

TRAIN = np.array([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
VAL = np.array([[7.0, 12.0], [3.0, 9.0]])


def test_fit_learns_mean_and_population_std() -> None:
    scaler = Standardizer().fit(TRAIN)
    # column 0: mean 3, population std sqrt((4 + 0 + 4) / 3) = sqrt(8/3)
    # column 1: constant 10 -> scale 1 (not 0)
    np.testing.assert_allclose(scaler.mean, [3.0, 10.0], rtol=1e-15)
    np.testing.assert_allclose(scaler.scale, [math.sqrt(8 / 3), 1.0], rtol=1e-15)


def test_validation_rows_use_the_training_statistics() -> None:
    scaler = Standardizer().fit(TRAIN)
    z = scaler.transform(VAL)
    s = math.sqrt(8 / 3)
    # (7 - 3)/s = 2.449, (12 - 10)/1 = 2; (3 - 3)/s = 0, (9 - 10)/1 = -1
    np.testing.assert_allclose(z, [[4 / s, 2.0], [0.0, -1.0]], rtol=1e-6)
    assert z.dtype == np.float32
    # fitting on the validation rows themselves would give something else: the scaler does not
    # re-learn from what it transforms
    assert not np.allclose(Standardizer().fit(VAL).transform(VAL), z)
    np.testing.assert_allclose(scaler.mean, [3.0, 10.0])


def test_fit_on_the_train_slice_of_a_split_only() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (80, 3)), rng.normal(5, 3, (20, 3))])  # regime change
    split = train_val_split(len(X), val_fraction=0.2, purge=5)
    scaler = Standardizer().fit(X[split.train])
    np.testing.assert_allclose(scaler.mean, X[:75].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaler.scale, X[:75].std(axis=0), rtol=1e-12)
    expected = (X[split.val] - X[:75].mean(axis=0)) / X[:75].std(axis=0)
    np.testing.assert_allclose(scaler.transform(X[split.val]), expected, rtol=1e-5, atol=1e-6)


def test_constant_column_maps_to_zero_and_input_is_not_modified() -> None:
    X = np.array([[0.1, 2.0], [0.1, 4.0], [0.1, 6.0]])
    before = X.copy()
    z = Standardizer().fit_transform(X)
    np.testing.assert_array_equal(z[:, 0], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(X, before)


def test_round_trip_through_json_is_exact() -> None:
    X = np.random.default_rng(1).normal(3.0, 7.0, (500, 6))
    scaler = Standardizer().fit(X)
    text = json.dumps(scaler.to_dict())  # JSON-serialisable as is
    restored = Standardizer.from_dict(json.loads(text))
    np.testing.assert_array_equal(restored.mean, scaler.mean)  # bit for bit
    np.testing.assert_array_equal(restored.scale, scaler.scale)
    np.testing.assert_array_equal(restored.transform(X), scaler.transform(X))
    assert scaler.to_dict()["n_features"] == 6


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2], "expected a dict"),
        ({"scale": [1.0]}, "missing key 'mean'"),
        ({"mean": [0.0]}, "missing key 'scale'"),
        ({"mean": [], "scale": []}, "'mean' must be a non-empty list"),
        ({"mean": [0.0, 1.0], "scale": [1.0]}, "'mean' has 2 values but 'scale' has 1"),
        ({"mean": [0.0, "x"], "scale": [1.0, 1.0]}, r"'mean'\[1\] must be a finite number"),
        ({"mean": [0.0], "scale": [float("nan")]}, r"'scale'\[0\] must be a finite number"),
        ({"mean": [True], "scale": [1.0]}, r"'mean'\[0\] must be a finite number"),
        ({"mean": [0.0], "scale": [0.0]}, r"'scale'\[0\] must be > 0"),
        ({"mean": [0.0], "scale": [1.0], "n_features": 2}, "'n_features' is 2"),
        ({"mean": [0.0], "scale": [1.0], "std": [1.0]}, r"unknown key\(s\) \['std'\]"),
    ],
)
def test_from_dict_rejects_malformed_input(payload: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Standardizer.from_dict(payload)  # type: ignore[arg-type]


def test_misuse_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().transform(TRAIN)
    with pytest.raises(ValueError, match="not fitted"):
        Standardizer().to_dict()
    with pytest.raises(ValueError, match="X: has 3 columns, the scaler was fitted on 2"):
        Standardizer().fit(TRAIN).transform(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="non-finite value nan at row 1, column 0"):
        Standardizer().fit(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="0 rows"):
        Standardizer().fit(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="2-D"):
        Standardizer().fit(np.zeros(4))
