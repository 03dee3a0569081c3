"""A training set: the rows of bars that have every feature AND a label, in time order.

Rows in the warm-up (some feature still NaN) and the last h rows (no future close, so no label) are
dropped; nothing is filled in. The kept rows stay in time order and, for valid bars, are contiguous
(features are finite after the warm-up, docs/ml/features.md), so a gap of k rows is k bars: the
purge gaps of `n1v1.ml.splits` can be counted in rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from n1v1.ml.features import FeatureSpec, build_features
from n1v1.ml.labels import LabelSpec, classify_returns, forward_returns


@dataclass(frozen=True, eq=False)
class Dataset:
    """X float32 [n, f]; y int64 [n]; index (bar open times) [n]; forward_return float64 [n].

    `forward_return[i]` is the return that decided `y[i]`, kept for economic evaluation.
    """

    X: np.ndarray
    y: np.ndarray
    index: pd.DatetimeIndex
    feature_names: list[str]
    forward_return: np.ndarray

    def __post_init__(self) -> None:
        n = self.y.shape[0]
        if self.X.ndim != 2 or self.X.shape != (n, len(self.feature_names)):
            raise ValueError(
                f"X: shape {self.X.shape} does not match {n} rows x "
                f"{len(self.feature_names)} feature_names"
            )
        if len(self.index) != n or self.forward_return.shape != (n,):
            raise ValueError(
                f"index/forward_return: lengths {len(self.index)}/{self.forward_return.shape} "
                f"do not match {n} labels"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])


def assemble(bars: pd.DataFrame, features: FeatureSpec, labels: LabelSpec) -> Dataset:
    """Features and labels of every bar that has both (warm-up and the last h bars dropped)."""
    frame = build_features(bars, features)
    values = frame.to_numpy(dtype=np.float64, copy=False)
    fwd = forward_returns(bars["close"].to_numpy(), labels.horizon)
    keep = np.isfinite(values).all(axis=1) & np.isfinite(fwd)
    rows = np.flatnonzero(keep)
    X = np.ascontiguousarray(values[rows], dtype=np.float32)  # row-major for batching
    overflow = ~np.isfinite(X)
    if overflow.any():  # finite in float64 but beyond float32's range: say which value
        r, c = (int(v[0]) for v in np.nonzero(overflow))
        raise ValueError(
            f"feature {frame.columns[c]!r}: value {values[rows[r], c]} at {frame.index[rows[r]]} "
            "does not fit in float32"
        )
    return Dataset(
        X=X,
        y=classify_returns(fwd[rows], labels),
        index=frame.index[rows],
        feature_names=list(frame.columns),
        forward_return=fwd[rows],
    )
