"""Calibration: PAV and Platt scaling against answers worked out by hand, JSON round trips and
errors that name the bad key."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from n1v1.ml.calibration import (
    Calibration,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    fit_calibration,
    pool_adjacent_violators,
    sigmoid,
)


def test_pav_pools_each_violation_with_its_left_neighbour():
    # [1, 3, 2, 4, 3, 5]: 2 < 3 -> pool (3 + 2) / 2 = 2.5; 3 < 4 -> pool (4 + 3) / 2 = 3.5
    out = pool_adjacent_violators([1, 3, 2, 4, 3, 5])
    np.testing.assert_allclose(out, [1.0, 2.5, 2.5, 3.5, 3.5, 5.0])


def test_pav_merges_backwards_when_a_pool_breaks_the_previous_block():
    # [3, 2, 1]: 3, 2 -> 2.5 (weight 2); then 1 < 2.5 -> (2.5 * 2 + 1) / 3 = 2
    np.testing.assert_allclose(pool_adjacent_violators([3, 2, 1]), [2.0, 2.0, 2.0])
    # an already sorted sequence is its own fit
    np.testing.assert_allclose(pool_adjacent_violators([0, 0, 1, 2]), [0, 0, 1, 2])


def test_pav_uses_weights():
    # y = [2, 0] with weights [1, 3]: (2 * 1 + 0 * 3) / 4 = 0.5 for both
    np.testing.assert_allclose(pool_adjacent_violators([2, 0], [1, 3]), [0.5, 0.5])


def test_pav_rejects_bad_weights():
    with pytest.raises(ValueError, match="weights finite and > 0"):
        pool_adjacent_violators([1, 2], [1, 0])


def test_isotonic_fit_and_interpolation_by_hand():
    # outcomes in order of p: [0, 1, 0, 1] -> PAV [0, 0.5, 0.5, 1]
    iso = IsotonicCalibrator.fit([0.4, 0.1, 0.3, 0.2], [1, 0, 0, 1])
    assert iso.x_knots == (0.1, 0.2, 0.3, 0.4)
    assert iso.y_knots == (0.0, 0.5, 0.5, 1.0)
    got = iso.predict([0.05, 0.1, 0.15, 0.25, 0.35, 0.9])
    # below the first knot: flat 0; 0.15 halfway between (0.1, 0) and (0.2, 0.5) -> 0.25;
    # 0.25 inside the 0.5 block; 0.35 halfway between (0.3, 0.5) and (0.4, 1) -> 0.75; above: 1
    np.testing.assert_allclose(got, [0.0, 0.0, 0.25, 0.5, 0.75, 1.0])


def test_isotonic_pools_equal_predictions_first():
    # p = 0.2 twice with outcomes 1 and 0 -> mean 0.5 at 0.2; p = 0.6 -> 1
    iso = IsotonicCalibrator.fit([0.2, 0.2, 0.6], [1, 0, 1])
    assert iso.x_knots == (0.2, 0.6) and iso.y_knots == (0.5, 1.0)


def test_isotonic_keeps_only_block_ends():
    # outcomes sorted by p: [0, 0, 0, 1, 1] -> two constant blocks; knots at each block's ends
    iso = IsotonicCalibrator.fit([0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 0, 1, 1])
    assert iso.x_knots == (0.1, 0.3, 0.4, 0.5) and iso.y_knots == (0.0, 0.0, 1.0, 1.0)


def _two_groups(n1: int, k1: int, n2: int, k2: int) -> tuple[np.ndarray, np.ndarray]:
    """n1 rows at logit -1 with k1 positives, n2 rows at logit +1 with k2 positives."""
    p = np.r_[np.full(n1, sigmoid(np.array([-1.0]))[0]), np.full(n2, sigmoid(np.array([1.0]))[0])]
    y = np.r_[np.ones(k1), np.zeros(n1 - k1), np.ones(k2), np.zeros(n2 - k2)]
    return p, y


def test_platt_without_prior_correction_reproduces_group_frequencies():
    # Two distinct logits z = -1, +1 make the model saturated: the MLE hits both frequencies.
    # sigmoid(-a + b) = 1/4 and sigmoid(a + b) = 3/4  ->  -a + b = -ln 3, a + b = ln 3
    # -> a = ln 3, b = 0
    p, y = _two_groups(4, 1, 4, 3)
    fit = PlattCalibrator.fit(p, y, prior_correction=False)
    assert fit.a == pytest.approx(math.log(3), abs=1e-7)
    assert fit.b == pytest.approx(0.0, abs=1e-7)
    # 2/4 and 4/5: -a + b = logit(0.5) = 0 and a + b = logit(0.8) = ln 4 -> a = b = ln 2
    p, y = _two_groups(4, 2, 5, 4)
    fit = PlattCalibrator.fit(p, y, prior_correction=False)
    assert (fit.a, fit.b) == pytest.approx((math.log(2), math.log(2)), abs=1e-7)


def test_platt_prior_correction_uses_smoothed_targets():
    # N+ = 4, N- = 4: positives count as 5/6, negatives as 1/6.
    # group z = -1: (1 * 5/6 + 3 * 1/6) / 4 = 1/3;  group z = +1: (3 * 5/6 + 1 * 1/6) / 4 = 2/3
    # -> -a + b = logit(1/3) = -ln 2, a + b = ln 2 -> a = ln 2, b = 0
    p, y = _two_groups(4, 1, 4, 3)
    fit = PlattCalibrator.fit(p, y)
    assert (fit.a, fit.b) == pytest.approx((math.log(2), 0.0), abs=1e-7)


def test_platt_recovers_known_slope_and_intercept():
    rng = np.random.default_rng(7)
    z = rng.normal(0.0, 1.5, 200_000)
    y = (rng.random(z.size) < sigmoid(2.0 * z - 0.5)).astype(int)
    fit = PlattCalibrator.fit(sigmoid(z), y)
    # standard errors at n = 200,000 are about 0.01; the prior correction shifts by ~1e-5
    assert fit.a == pytest.approx(2.0, abs=0.04)
    assert fit.b == pytest.approx(-0.5, abs=0.04)


def test_platt_on_a_separable_tail_stays_finite_with_prior_correction():
    fit = PlattCalibrator.fit([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    assert math.isfinite(fit.a) and math.isfinite(fit.b) and fit.a > 0
    with pytest.raises(ValueError, match="needs both outcomes"):
        PlattCalibrator.fit([0.1, 0.2], [1, 1], prior_correction=False)


def test_calibration_improves_log_loss_of_an_overconfident_model_out_of_sample():
    rng = np.random.default_rng(3)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.normal(0.0, 2.0, n)
        y = (rng.random(n) < sigmoid(z / 2.0)).astype(int)  # the truth is half as sure
        return np.column_stack([1 - sigmoid(z), sigmoid(z)]), y

    def log_loss(proba: np.ndarray, y: np.ndarray) -> float:
        return float(-np.mean(np.log(np.clip(proba[np.arange(y.size), y], 1e-15, 1))))

    calib_p, calib_y = sample(20_000)
    test_p, test_y = sample(20_000)
    for method in ("platt", "isotonic"):
        cal = fit_calibration(calib_p, calib_y, method)
        assert log_loss(cal.apply(test_p), test_y) < log_loss(test_p, test_y) - 0.02
    assert fit_calibration(calib_p, calib_y).calibrators[0].a == pytest.approx(0.5, abs=0.05)


def test_multiclass_calibration_renormalises_rows_by_hand():
    cal = Calibration(
        "platt",
        3,
        (PlattCalibrator(1.0, 0.0), PlattCalibrator(1.0, 0.0), PlattCalibrator(1.0, math.log(2))),
    )
    # class 2: sigmoid(logit(0.5) + ln 2) = 2/3; classes 0, 1 unchanged: 0.2, 0.3
    # row sum 0.2 + 0.3 + 2/3 = 7/6 -> [0.2 * 6/7, 0.3 * 6/7, 2/3 * 6/7] = [1.2/7, 1.8/7, 4/7]
    out = cal.apply([[0.2, 0.3, 0.5], [np.nan, np.nan, np.nan]])
    np.testing.assert_allclose(out[0], [1.2 / 7, 1.8 / 7, 4 / 7])
    assert np.isnan(out[1]).all()  # not-ready rows stay not ready


def test_binary_calibration_maps_class_one_and_complements():
    cal = Calibration("platt", 2, (PlattCalibrator(1.0, math.log(3)),))
    # sigmoid(logit(0.5) + ln 3) = 3/4
    np.testing.assert_allclose(cal.apply([[0.5, 0.5]]), [[0.25, 0.75]])


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_calibration_round_trips_through_json(method):
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], 300)
    y = rng.integers(0, 3, 300)
    cal = fit_calibration(proba, y, method)
    back = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    np.testing.assert_allclose(back.apply(proba), cal.apply(proba))


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"kind": "spline"}, "calibrator.kind"),
        ({"kind": "platt", "a": "x", "b": 0}, "calibrator.a"),
        ({"kind": "platt", "a": 1, "b": float("nan")}, "calibrator.b: must be finite"),
        ({"kind": "isotonic", "x": [0.2, 0.1], "y": [0, 1]}, "calibrator.x: values must be non-"),
        ({"kind": "isotonic", "x": [0.1, 0.2], "y": [0]}, "same length"),
        ({"kind": "isotonic", "x": [0.1], "y": [1.5]}, "calibrator.y: values must lie in"),
    ],
)
def test_calibrator_from_dict_names_the_bad_key(payload, fragment):
    with pytest.raises(ValueError, match=fragment):
        calibrator_from_dict(payload)


def test_calibration_from_dict_checks_the_class_count():
    good = {"method": "platt", "n_classes": 3, "calibrators": [{"kind": "platt", "a": 1, "b": 0}]}
    with pytest.raises(ValueError, match="expected a list of 3 calibrator"):
        Calibration.from_dict(good)
    with pytest.raises(ValueError, match=r"calibration\.method"):
        Calibration.from_dict({**good, "method": "beta"})


def test_fit_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match="must be finite"):
        fit_calibration([[np.nan, 1.0]], [1])
    with pytest.raises(ValueError, match="classes must lie in"):
        fit_calibration([[0.4, 0.6]], [2])
    with pytest.raises(ValueError, match="probabilities must be finite and in"):
        PlattCalibrator.fit([1.5], [1])
