"""Probability-forecast metrics and the decision threshold, in NumPy (formulas in
docs/ml/evaluation.md). Shared by training (the card), walk-forward evaluation and the benchmark."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _outcomes(y_true: Any, n: int | None = None) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or (n is not None and y.shape[0] != n):
        raise ValueError(f"y_true: expected a 1-D array of {n} outcomes, got shape {y.shape}")
    return y


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks of `values`; tied values share the mean of the ranks they span."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    _, first, counts = np.unique(v[order], return_index=True, return_counts=True)
    ranks = np.empty(v.size)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def roc_auc(y_true: Any, score: Any) -> float:
    """P(score of a random positive > score of a random negative), ties counting one half:
    (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg). NaN if a class is absent."""
    s = np.asarray(score, dtype=np.float64)
    pos = _outcomes(y_true, s.size).astype(bool)
    n_pos = int(pos.sum())
    n_neg = s.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(average_ranks(s)[pos].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def log_loss(y_true: Any, proba: Any, eps: float = 1e-15) -> float:
    """Mean -ln p(true class). `proba` is P(class 1) (1-D) or class probabilities [n, k]; the
    probability of the true class is clipped to [eps, 1 - eps] so one confident miss is finite."""
    p = np.asarray(proba, dtype=np.float64)
    y = _outcomes(y_true, p.shape[0]).astype(np.int64)
    if p.ndim == 1:
        p_true = np.where(y == 1, p, 1.0 - p)
    elif p.ndim == 2 and y.size and y.min() >= 0 and y.max() < p.shape[1]:
        p_true = p[np.arange(y.size), y]
    else:
        raise ValueError(f"proba: shape {p.shape} does not fit classes of y_true")
    return float(-np.mean(np.log(np.clip(p_true, eps, 1.0 - eps))))


def brier_score(y_true: Any, p: Any) -> float:
    """Mean (p - y)^2 for a binary event with predicted probability p."""
    prob = np.asarray(p, dtype=np.float64)
    y = _outcomes(y_true, prob.size).astype(np.float64)
    return float(np.mean((prob - y) ** 2))


def reliability_table(y_true: Any, p: Any, n_bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins [k/B, (k+1)/B) (the last one includes 1): count, mean predicted
    probability and observed frequency of the event (None for an empty bin)."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins: expected an integer >= 1, got {n_bins!r}")
    prob = np.asarray(p, dtype=np.float64)
    y = _outcomes(y_true, prob.size).astype(np.float64)
    which = np.minimum((prob * n_bins).astype(np.int64), n_bins - 1)
    rows = []
    for k in range(n_bins):
        inside = which == k
        count = int(inside.sum())
        rows.append(
            {
                "lower": k / n_bins,
                "upper": (k + 1) / n_bins,
                "count": count,
                "mean_predicted": float(prob[inside].mean()) if count else None,
                "observed_frequency": float(y[inside].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(table: Sequence[dict[str, Any]]) -> float:
    """sum over bins of count / n * |observed frequency - mean predicted| (empty bins add 0)."""
    n = sum(row["count"] for row in table)
    if n == 0:
        return math.nan
    gaps = [
        row["count"] * abs(row["observed_frequency"] - row["mean_predicted"])
        for row in table
        if row["count"]
    ]
    return float(sum(gaps) / n)


def probability_metrics(y: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Test-set quality of class probabilities [n, k]. The event scored by AUC, Brier and the
    reliability table is the long class (the last one); log loss uses every class."""
    event = proba.shape[1] - 1
    hit = (y == event).astype(np.int64)
    table = reliability_table(hit, proba[:, event], n_bins)
    return {
        "n": int(y.size),
        "event_rate": float(hit.mean()) if y.size else None,
        "auc": roc_auc(hit, proba[:, event]),
        "log_loss": log_loss(y, proba),
        "brier": brier_score(hit, proba[:, event]),
        "ece": expected_calibration_error(table),
        "reliability": table,
    }


def macro_auc(proba: np.ndarray, y: np.ndarray) -> float:
    """Binary: ROC AUC of P(class 1). Ternary: the mean one-vs-rest AUC over the classes present
    (a class absent from `y` has no AUC). NaN when no AUC is defined."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y)
    if proba.shape[1] == 2:
        return roc_auc(y == 1, proba[:, 1])
    aucs = [a for c in range(proba.shape[1]) if not math.isnan(a := roc_auc(y == c, proba[:, c]))]
    return float(np.mean(aucs)) if aucs else math.nan


THRESHOLD_RULE = "max_validation_net_return"


def choose_threshold(
    proba: np.ndarray, forward_return: np.ndarray, cost: float
) -> tuple[float, float]:
    """The threshold t of the `ml_signal` rule "trade when P(class) > t", chosen on validation
    rows to maximise the summed forward return net of `cost` (the round-trip fee) of the rows it
    would trade: sum over p > t of (r - cost) for longs, (-r - cost) for shorts (ternary: one t for
    both sides). When no t earns more than nothing, t = 1.0: a model without an economic edge on
    validation does not trade. Every signalled row is charged a full round trip, which is
    conservative for a rule that holds through consecutive signals. Candidates are the midpoints
    between observed probabilities (at most 1,001 quantiles); ties go to the highest t.
    Returns (t, net return summed over the rows traded at t)."""
    proba = np.asarray(proba, dtype=np.float64)
    fwd = np.asarray(forward_return, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[0] != fwd.shape[0]:
        raise ValueError(f"proba: shape {proba.shape} does not match forward_return {fwd.shape}")
    ok = np.isfinite(proba).all(axis=1) & np.isfinite(fwd)
    proba, fwd = proba[ok], fwd[ok]
    if proba.shape[1] == 2:
        sides = [(proba[:, 1], fwd - cost)]
    else:
        sides = [(proba[:, 2], fwd - cost), (proba[:, 0], -fwd - cost)]
    values = np.unique(np.concatenate([p for p, _ in sides]))
    if values.size > 1001:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, 1001)))
    if values.size == 0:
        return 1.0, 0.0
    candidates = (values[:-1] + values[1:]) / 2.0 if values.size > 1 else values - 1e-12
    gains = np.zeros(candidates.size)
    for p, net in sides:
        order = np.argsort(p, kind="mergesort")
        tail = np.concatenate([np.cumsum(net[order][::-1])[::-1], [0.0]])  # sum of rows i..end
        gains += tail[np.searchsorted(p[order], candidates, side="right")]
    best = candidates.size - 1 - int(np.argmax(gains[::-1]))
    if gains[best] <= 0.0:
        return 1.0, 0.0
    return float(candidates[best]), float(gains[best])
