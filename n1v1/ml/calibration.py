"""Probability calibration: Platt scaling and isotonic regression, in plain NumPy.

A classifier trained to minimise log loss on one period is rarely calibrated on the next: a
predicted 0.7 may come true 55 % of the time. A calibrator is a monotone map p -> q fitted on a
held-out *calibration tail* that neither training nor the threshold choice saw, so the calibrated
probabilities (and the metrics computed on them) stay out-of-sample.

- Platt scaling fits q = sigmoid(a * logit(p) + b) by Newton's method on the Bernoulli log
  likelihood. Two parameters cannot overfit a short tail, and a > 0 keeps the ranking (and so the
  AUC) of the model. With `prior_correction` (Platt 1999) the 0/1 targets are replaced by
  (N+ + 1) / (N+ + 2) and 1 / (N- + 2), which keeps a and b finite when the tail is separable.
- Isotonic regression fits the best non-decreasing step function by pool-adjacent-violators (PAV)
  and interpolates linearly between its steps; it is more flexible and needs more data.

Multi-class (ternary) probabilities are calibrated one class against the rest and renormalised.
Everything round-trips through `to_dict` / `from_dict` (JSON-safe) so it can be stored in a model
card or an evaluation result. scikit-learn is not needed at runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Method = Literal["platt", "isotonic"]
_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before the logit


def _as_probabilities(p: Any, name: str) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of probabilities, got shape {arr.shape}")
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0):
        raise ValueError(f"{name}: probabilities must be finite and in [0, 1]")
    return arr


def _as_binary(y: Any, n: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,):
        raise ValueError(f"y: expected shape ({n},) to match the probabilities, got {arr.shape}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("y: binary outcomes must be 0 or 1")
    return arr.astype(np.float64)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) with p clipped to [1e-7, 1 - 1e-7], so 0 and 1 map to finite values."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)), without overflow warnings for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass(frozen=True, slots=True)
class PlattCalibrator:
    """q = sigmoid(a * logit(p) + b); a = 1, b = 0 is the identity."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(
        cls, p: Any, y: Any, *, prior_correction: bool = True, max_iter: int = 100
    ) -> PlattCalibrator:
        """Maximum-likelihood (a, b) by damped Newton steps on the two-parameter logistic model."""
        probs = _as_probabilities(p, "p")
        target = _as_binary(y, probs.size)
        if probs.size == 0:
            raise ValueError("Platt scaling needs at least one calibration row")
        n_pos = float(target.sum())
        n_neg = float(target.size - n_pos)
        if prior_correction:
            target = np.where(target == 1.0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))
        elif n_pos == 0 or n_neg == 0:
            raise ValueError(
                "Platt scaling without prior_correction needs both outcomes in the calibration "
                f"rows (got {int(n_pos)} positive, {int(n_neg)} negative)"
            )
        design = np.column_stack([logit(probs), np.ones(probs.size)])
        theta = np.array([1.0, 0.0])

        def nll(t: np.ndarray) -> float:
            z = design @ t
            # log(1 + e^z) - target * z, the Bernoulli negative log likelihood in logit form
            return float(np.sum(np.logaddexp(0.0, z) - target * z))

        current = nll(theta)
        for _ in range(max_iter):
            q = sigmoid(design @ theta)
            grad = design.T @ (q - target)
            hess = design.T @ (design * (q * (1.0 - q))[:, None])
            # A tiny ridge keeps the solve defined when every logit is the same (a, b confounded).
            step = np.linalg.solve(hess + 1e-10 * np.eye(2), grad)
            scale = 1.0
            while scale > 1e-8:  # halve the step until the likelihood does not get worse
                candidate = theta - scale * step
                value = nll(candidate)
                if value <= current + 1e-12:
                    break
                scale *= 0.5
            else:
                break
            theta, improvement = candidate, current - value
            current = value
            if np.max(np.abs(scale * step)) < 1e-10 or improvement < 1e-14:
                break
        return cls(a=float(theta[0]), b=float(theta[1]))

    def predict(self, p: Any) -> np.ndarray:
        return sigmoid(self.a * logit(_as_probabilities(p, "p")) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "platt", "a": self.a, "b": self.b}


def pool_adjacent_violators(y: Any, weights: Any | None = None) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of the sequence `y` (in the given order).

    Scan left to right keeping blocks (weighted mean, weight, length); whenever a block's mean is
    below the previous block's, merge them and re-check backwards. Each element is merged at most
    once, so the cost is O(n).
    """
    values = np.asarray(y, dtype=np.float64)
    w = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64)
    if values.ndim != 1 or w.shape != values.shape:
        raise ValueError(
            f"y and weights must be 1-D of equal length, got {values.shape}, {w.shape}"
        )
    if not (np.isfinite(values).all() and np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("pool_adjacent_violators: y must be finite and weights finite and > 0")
    means: list[float] = []
    sizes: list[float] = []
    counts: list[int] = []
    for value, weight in zip(values.tolist(), w.tolist(), strict=True):
        means.append(value)
        sizes.append(weight)
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m2, s2, c2 = means.pop(), sizes.pop(), counts.pop()
            total = sizes[-1] + s2
            means[-1] = (means[-1] * sizes[-1] + m2 * s2) / total
            sizes[-1] = total
            counts[-1] += c2
    return np.repeat(np.asarray(means), np.asarray(counts, dtype=np.int64))


@dataclass(frozen=True, slots=True)
class IsotonicCalibrator:
    """A non-decreasing map: linear interpolation through (x_knots, y_knots), flat outside."""

    x_knots: tuple[float, ...]
    y_knots: tuple[float, ...]

    @classmethod
    def fit(cls, p: Any, y: Any) -> IsotonicCalibrator:
        """PAV on outcomes sorted by predicted probability; equal predictions are pooled first."""
        probs = _as_probabilities(p, "p")
        target = _as_binary(y, probs.size)
        if probs.size == 0:
            raise ValueError("isotonic calibration needs at least one calibration row")
        xs, inverse, counts = np.unique(probs, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=target, minlength=xs.size)
        fitted = pool_adjacent_violators(sums / counts, counts.astype(np.float64))
        # Keep the first and last x of every constant block: interpolation between them is flat,
        # and between blocks it is linear, with far fewer knots than distinct predictions.
        change = np.flatnonzero(np.diff(fitted) != 0.0)
        keep = np.unique(np.concatenate([[0], change, change + 1, [xs.size - 1]]))
        return cls(tuple(xs[keep].tolist()), tuple(fitted[keep].tolist()))

    def predict(self, p: Any) -> np.ndarray:
        return np.interp(_as_probabilities(p, "p"), self.x_knots, self.y_knots)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "isotonic", "x": list(self.x_knots), "y": list(self.y_knots)}


Calibrator = PlattCalibrator | IsotonicCalibrator


def calibrator_from_dict(d: Mapping[str, Any]) -> Calibrator:
    """Rebuild a calibrator from `to_dict`; a ValueError naming the bad key otherwise."""
    if not isinstance(d, Mapping):
        raise ValueError(f"calibrator: expected a mapping, got {type(d).__name__}")
    kind = d.get("kind")
    if kind == "platt":
        values = {}
        for key in ("a", "b"):
            value = d.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"calibrator.{key}: expected a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"calibrator.{key}: must be finite, got {value!r}")
            values[key] = float(value)
        return PlattCalibrator(**values)
    if kind == "isotonic":
        arrays = {}
        for key in ("x", "y"):
            try:
                arr = np.asarray(d.get(key), dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"calibrator.{key}: expected a list of numbers") from None
            if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
                raise ValueError(f"calibrator.{key}: expected a non-empty list of finite numbers")
            if arr.min() < 0.0 or arr.max() > 1.0:
                raise ValueError(f"calibrator.{key}: values must lie in [0, 1]")
            if np.any(np.diff(arr) < 0.0):
                raise ValueError(f"calibrator.{key}: values must be non-decreasing")
            arrays[key] = arr
        if arrays["x"].size != arrays["y"].size:
            raise ValueError("calibrator.x and calibrator.y must have the same length")
        return IsotonicCalibrator(tuple(arrays["x"].tolist()), tuple(arrays["y"].tolist()))
    raise ValueError(f"calibrator.kind: expected 'platt' or 'isotonic', got {kind!r}")


@dataclass(frozen=True, slots=True)
class Calibration:
    """Calibrators for a model's class probabilities [n, n_classes].

    Binary: one calibrator for P(class 1); P(class 0) = 1 - that. More classes: one calibrator per
    class (that class against the rest), then each row is renormalised to sum to 1.
    """

    method: Method
    n_classes: int
    calibrators: tuple[Calibrator, ...]

    def apply(self, proba: Any) -> np.ndarray:
        """Calibrated probabilities, same shape; rows with a NaN (not ready) stay NaN."""
        arr = np.asarray(proba, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != self.n_classes:
            raise ValueError(f"proba: expected shape (n, {self.n_classes}), got {arr.shape}")
        out = np.full_like(arr, np.nan)
        ready = np.isfinite(arr).all(axis=1)
        rows = np.clip(arr[ready], 0.0, 1.0)
        if self.n_classes == 2:
            p1 = self.calibrators[0].predict(rows[:, 1])
            out[ready] = np.column_stack([1.0 - p1, p1])
            return out
        cols = np.column_stack([c.predict(rows[:, k]) for k, c in enumerate(self.calibrators)])
        total = cols.sum(axis=1, keepdims=True)
        uniform = np.full_like(cols, 1.0 / self.n_classes)
        safe_total = np.where(total > 0.0, total, 1.0)
        out[ready] = np.where(total > 0.0, cols / safe_total, uniform)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n_classes": self.n_classes,
            "calibrators": [c.to_dict() for c in self.calibrators],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        if not isinstance(d, Mapping):
            raise ValueError(f"calibration: expected a mapping, got {type(d).__name__}")
        method = d.get("method")
        if method not in ("platt", "isotonic"):
            raise ValueError(f"calibration.method: expected 'platt' or 'isotonic', got {method!r}")
        n_classes = d.get("n_classes")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"calibration.n_classes: expected an integer >= 2, got {n_classes!r}")
        raw = d.get("calibrators")
        expected = 1 if n_classes == 2 else n_classes
        if not isinstance(raw, list) or len(raw) != expected:
            raise ValueError(
                f"calibration.calibrators: expected a list of {expected} calibrator(s) for "
                f"{n_classes} classes"
            )
        calibrators = tuple(calibrator_from_dict(c) for c in raw)
        if any(c.to_dict()["kind"] != method for c in calibrators):
            raise ValueError(f"calibration.calibrators: every calibrator must be {method!r}")
        return cls(method, n_classes, calibrators)


def fit_calibration(proba: Any, y: Any, method: Method = "platt") -> Calibration:
    """Fit a `Calibration` on held-out rows: proba [n, n_classes], y int classes [n]."""
    arr = np.asarray(proba, dtype=np.float64)
    labels = np.asarray(y)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"proba: expected shape (n, n_classes >= 2), got {arr.shape}")
    if labels.shape != (arr.shape[0],):
        raise ValueError(f"y: expected shape ({arr.shape[0]},), got {labels.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("proba: calibration rows must be finite (drop rows that are not ready)")
    n_classes = arr.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"y: classes must lie in [0, {n_classes - 1}]")
    if method not in ("platt", "isotonic"):
        raise ValueError(f"method: expected 'platt' or 'isotonic', got {method!r}")
    fit = PlattCalibrator.fit if method == "platt" else IsotonicCalibrator.fit
    classes = [1] if n_classes == 2 else list(range(n_classes))
    calibrators = tuple(fit(np.clip(arr[:, k], 0.0, 1.0), labels == k) for k in classes)
    return Calibration(method, n_classes, calibrators)
