"""A training set: the rows of bars that have every feature AND a label, in time order.

Rows in the warm-up (some feature still NaN) and the last h rows (no future close, so no label) are
dropped; nothing is filled in. The kept rows stay in time order; within a session they are
contiguous (features are finite after the warm-up, docs/ml/features.md), so a gap of k rows is at
least k bars: the purge gaps of `n1v1.ml.splits` can be counted in rows.

Sessions: a file that joins days months apart (the bundled minute files do) has holes far longer
than any label horizon. A label computed across such a hole is the price move of months, not of h
bars (one such row of the demo data "returned" +300 %), and a feature whose look-back reaches
across it mixes two markets. So a hole of more than `MAX_SESSION_GAP_BARS` missing bars (the limit
beyond which `gap_policy: fill` refuses to invent bars) starts a new session: a row whose h-bar
label horizon crosses a break has no label, and the first `feature_warmup(spec)` rows of every
session after the first are dropped like the warm-up at the start of the data. Shorter holes
(minutes without trades) are kept as they are. `session_warmup_mask` gives `ml_signal` the same
rule at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from n1v1.data.resample import infer_timeframe
from n1v1.data.validate import DEFAULT_MAX_FILL_BARS
from n1v1.ml.features import FeatureSpec, build_features, feature_warmup
from n1v1.ml.labels import LabelSpec, classify_returns, forward_returns

MAX_SESSION_GAP_BARS = DEFAULT_MAX_FILL_BARS  # a longer hole starts a new session


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


def session_ids(index: pd.DatetimeIndex) -> np.ndarray:
    """int64 session number of every bar: 0, then +1 after each hole of more than
    `MAX_SESSION_GAP_BARS` missing bars (bar spacing: the median, `infer_timeframe`)."""
    n = len(index)
    if n < 2:
        return np.zeros(n, dtype=np.int64)
    breaks = _session_breaks(index)
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def _session_breaks(index: pd.DatetimeIndex) -> np.ndarray:
    """Per gap between consecutive bars (len(index) - 1 of them, len(index) >= 2): does a new
    session start after it?"""
    ns = index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8
    diffs = np.diff(ns)
    step = int(np.median(diffs))  # the spacing `infer_timeframe` reports, without a frame
    if step <= 0:
        infer_timeframe(pd.DataFrame(index=index))  # raises the DataError that names the fault
    missing = -(-diffs // step) - 1  # bar open times strictly between two present bars
    return missing > MAX_SESSION_GAP_BARS


def last_bar_in_session_warmup(index: pd.DatetimeIndex, warmup: int) -> bool:
    """`session_warmup_mask(index, warmup)[-1]` without the mask: a live engine asks this of
    the newest bar of every symbol on every bar."""
    if len(index) < 2:
        return False
    breaks = np.flatnonzero(_session_breaks(index))
    if breaks.size == 0:
        return False
    session_start = int(breaks[-1]) + 1  # the first bar of the last session
    return len(index) - 1 - session_start < warmup


def session_warmup_mask(index: pd.DatetimeIndex, warmup: int) -> np.ndarray:
    """True for the first `warmup` bars of every session after the first: their look-back
    reaches across a session break (the first session's warm-up is NaN by construction)."""
    sid = session_ids(index)
    position = np.arange(len(sid))
    starts = np.flatnonzero(np.diff(sid, prepend=sid[:1]) != 0)  # first bar of sessions 1, 2, ...
    first_bar = np.zeros(len(sid), dtype=np.int64)
    if starts.size:
        first_bar = np.concatenate([[0], starts])[sid]
    return (sid > 0) & (position - first_bar < warmup)


def assemble(bars: pd.DataFrame, features: FeatureSpec, labels: LabelSpec) -> Dataset:
    """Features and labels of every bar that has both: the warm-up of each session and the rows
    whose label horizon runs past the data or across a session break are dropped."""
    frame = build_features(bars, features)
    values = frame.to_numpy(dtype=np.float64, copy=False)
    fwd = forward_returns(bars["close"].to_numpy(), labels.horizon)
    sid = session_ids(bars.index)
    h = labels.horizon
    same_session = np.zeros(len(sid), dtype=np.bool_)
    same_session[: max(len(sid) - h, 0)] = sid[h:] == sid[: len(sid) - h]
    keep = np.isfinite(values).all(axis=1) & np.isfinite(fwd) & same_session
    keep &= ~session_warmup_mask(bars.index, feature_warmup(features))
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
