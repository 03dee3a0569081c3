"""Feature standardisation, fitted on training rows only and stored with the model.

Fitting on the whole series would leak the validation period's mean and spread into training (a
subtle lookahead), so the caller fits on `X[split.train]` and transforms every other row with those
statistics. `to_dict`/`from_dict` round-trip exactly through JSON (Python floats print in their
shortest round-trip form), which is how the model registry stores the scaler (scaler.json).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _matrix(X: object, name: str = "X") -> np.ndarray:
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float array ({exc})") from exc
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [rows, features], got shape {arr.shape}")
    return arr


def _vector(d: dict, key: str) -> np.ndarray:
    if key not in d:
        raise ValueError(f"scaler: missing key {key!r}")
    value = d[key]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"scaler: {key!r} must be a non-empty list of numbers")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"scaler: {key!r}[{i}] must be a finite number, got {v!r}")
    return np.array(value, dtype=np.float64)


class Standardizer:
    """z = (x - mean) / scale per column; scale is the population std, 1 for a constant column.

    A constant column (max == min on the training rows) gets its value as mean and scale 1, rather
    than a rounding-noise std near 0, so it maps to exactly 0 instead of exploding.
    """

    def __init__(self, mean: np.ndarray | None = None, scale: np.ndarray | None = None) -> None:
        self.mean: np.ndarray | None = None if mean is None else np.asarray(mean, np.float64)
        self.scale: np.ndarray | None = None if scale is None else np.asarray(scale, np.float64)

    @property
    def n_features(self) -> int:
        return 0 if self.mean is None else int(self.mean.shape[0])

    def fit(self, X: np.ndarray) -> Standardizer:
        """Learn mean and scale from training rows (float64 accumulation; X is not modified)."""
        arr = _matrix(X)
        if arr.shape[0] == 0:
            raise ValueError("X: cannot fit a scaler on 0 rows")
        finite = np.isfinite(arr)
        if not finite.all():
            r, c = (int(v[0]) for v in np.nonzero(~finite))
            raise ValueError(f"X: non-finite value {arr[r, c]} at row {r}, column {c}")
        constant = arr.max(axis=0) == arr.min(axis=0)
        # A summed mean of n copies of 0.1 can miss 0.1 by an ulp; use the value itself.
        self.mean = np.where(constant, arr[0], arr.mean(axis=0))
        std = arr.std(axis=0)
        self.scale = np.where(constant | (std == 0.0), 1.0, std)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(X - mean) / scale as float32 with the statistics learnt in `fit` (or `from_dict`)."""
        if self.mean is None or self.scale is None:
            raise ValueError("Standardizer: not fitted; call fit(train rows) or from_dict first")
        arr = _matrix(X)
        if arr.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"X: has {arr.shape[1]} columns, the scaler was fitted on {self.mean.shape[0]}"
            )
        return ((arr - self.mean) / self.scale).astype(np.float32)

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.fit(X).transform(X)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: {"mean": [...], "scale": [...], "n_features": f} of plain Python floats."""
        if self.mean is None or self.scale is None:
            raise ValueError("Standardizer: not fitted; nothing to serialise")
        return {
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "n_features": self.n_features,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        """Rebuild from `to_dict` output; every malformed input is a ValueError naming the key."""
        if not isinstance(d, dict):
            raise ValueError(f"scaler: expected a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - {"mean", "scale", "n_features"})
        if unknown:
            raise ValueError(f"scaler: unknown key(s) {unknown}")
        mean, scale = _vector(d, "mean"), _vector(d, "scale")
        if mean.shape != scale.shape:
            raise ValueError(
                f"scaler: 'mean' has {mean.shape[0]} values but 'scale' has {scale.shape[0]}"
            )
        if (scale <= 0.0).any():
            i = int(np.flatnonzero(scale <= 0.0)[0])
            raise ValueError(f"scaler: 'scale'[{i}] must be > 0, got {scale[i]}")
        if "n_features" in d and (
            isinstance(d["n_features"], bool) or d["n_features"] != mean.shape[0]
        ):
            raise ValueError(
                f"scaler: 'n_features' is {d['n_features']!r} but 'mean' has {mean.shape[0]} values"
            )
        return cls(mean, scale)
