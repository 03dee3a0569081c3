"""Time-ordered splits of Dataset rows with purge gaps, and sliding windows for sequence models.

Never shuffle across time: a model validated on rows interleaved with its training rows is graded
on days it has already seen. And a label looks h bars ahead, so the last h training rows' labels
would be computed from prices inside the validation period; a purge gap of `purge >= h` rows
between the blocks removes exactly that overlap: for every training row i, i + h < first row of the
next block. docs/ml/features.md draws the layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True, slots=True)
class Split:
    """Row ranges of a Dataset: train = [0, n_train), val = [n_train + purge, n)."""

    train: slice
    val: slice


@dataclass(frozen=True, slots=True)
class Fold:
    """One walk-forward fold: [train][purge][val][purge][calib][purge][test], in time order.

    train fits the model, val picks the epoch and decision threshold, calib fits the probability
    calibration, test is scored once. `number` counts from 0 in time order.
    """

    number: int
    train: slice
    val: slice
    calib: slice
    test: slice


def _count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _fraction(value: object, name: str, *, allow_zero: bool) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not ((value >= 0.0 if allow_zero else value > 0.0) and value < 1.0):
        bound = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"{name}: must be a number in {bound}, got {value!r}")
    return float(value)


def train_val_split(n: int, val_fraction: float, purge: int) -> Split:
    """train = [0, n_train), val = [n_train + purge, n) with n_val = round(val_fraction * n).

    Example: n=100, val_fraction=0.2, purge=15 -> val [80, 100), gap [65, 80), train [0, 65).
    """
    n = _count(n, "n", 0)
    val_fraction = _fraction(val_fraction, "val_fraction", allow_zero=False)
    purge = _count(purge, "purge", 0)
    n_val = round(val_fraction * n)
    n_train = n - n_val - purge
    if n_val < 1 or n_train < 1:
        raise ValueError(
            f"n: {n} rows are too few for val_fraction={val_fraction} and purge={purge} "
            f"(would leave {n_train} training and {n_val} validation rows; need >= 1 each)"
        )
    return Split(train=slice(0, n_train), val=slice(n_train + purge, n))


def walk_forward_folds(
    n: int,
    *,
    n_folds: int,
    test_size: int,
    purge: int,
    mode: Literal["rolling", "expanding"],
    train_size: int | None = None,
    val_fraction: float = 0.2,
    calib_fraction: float = 0.1,
) -> list[Fold]:
    """Folds whose tests are the last `n_folds * test_size` rows, consecutive, in time order.

    The rows before the first test, `pre = n - n_folds * test_size`, set the block sizes shared by
    every fold: val = round(val_fraction * pre), calib = round(calib_fraction * pre). Fold k tests
    [s, s + test_size) with s = pre + k * test_size; its calib ends `purge` rows before s, its val
    `purge` rows before calib, its train `purge` rows before val, at e = s - 3*purge - val - calib.
    expanding: train = [0, e). rolling: train = [e - train_size, e), with train_size defaulting to
    the first fold's (all rows before it), so fold 0 is the same in both modes.
    """
    n = _count(n, "n", 0)
    n_folds = _count(n_folds, "n_folds", 1)
    test_size = _count(test_size, "test_size", 1)
    purge = _count(purge, "purge", 0)
    if mode not in ("rolling", "expanding"):
        raise ValueError(f"mode: must be 'rolling' or 'expanding', got {mode!r}")
    val_fraction = _fraction(val_fraction, "val_fraction", allow_zero=False)
    calib_fraction = _fraction(calib_fraction, "calib_fraction", allow_zero=True)
    if val_fraction + calib_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + calib_fraction: must be < 1, got {val_fraction} + {calib_fraction}"
        )
    if mode == "expanding" and train_size is not None:
        raise ValueError("train_size: only used by mode='rolling' (expanding trains from row 0)")

    pre = n - n_folds * test_size
    n_val = round(val_fraction * pre) if pre > 0 else 0
    n_calib = round(calib_fraction * pre) if pre > 0 else 0
    first_train = pre - 3 * purge - n_val - n_calib  # train rows of fold 0, which starts at row 0
    if n_val < 1 or (calib_fraction > 0 and n_calib < 1) or first_train < 1:
        raise ValueError(
            f"n: {n} rows are too few for n_folds={n_folds} x test_size={test_size} and "
            f"3 x purge={purge}: the first fold would get {first_train} train, {n_val} val and "
            f"{n_calib} calib rows (need >= 1 each)"
        )
    window = first_train
    if mode == "rolling":
        window = first_train if train_size is None else _count(train_size, "train_size", 1)
        if window > first_train:
            raise ValueError(
                f"train_size: {window} rows do not fit before the first fold's validation block; "
                f"at most {first_train} with n={n}, n_folds={n_folds}, test_size={test_size}, "
                f"purge={purge}"
            )

    folds = []
    for k in range(n_folds):
        s = pre + k * test_size
        e = s - 3 * purge - n_val - n_calib
        start = 0 if mode == "expanding" else e - window
        val_start = e + purge
        calib_start = val_start + n_val + purge
        folds.append(
            Fold(
                number=k,
                train=slice(start, e),
                val=slice(val_start, val_start + n_val),
                calib=slice(calib_start, calib_start + n_calib),
                test=slice(s, s + test_size),
            )
        )
    return folds


def sequence_windows(X: np.ndarray, window: int) -> np.ndarray:
    """[n - window + 1, window, f] read-only view of X (no copy): row j is X[j : j + window].

    Row j ends at X row j + window - 1, so its label is y[j + window - 1]: use y[window - 1:].
    """
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        shape = getattr(X, "shape", None)
        raise ValueError(f"X: expected a 2-D numpy array [rows, features], got shape {shape}")
    window = _count(window, "window", 1)
    if window > X.shape[0]:
        raise ValueError(f"window: {window} is longer than X ({X.shape[0]} rows)")
    # sliding_window_view puts the window axis last: [n-w+1, f, w] -> swap to [n-w+1, w, f].
    return np.lib.stride_tricks.sliding_window_view(X, window, axis=0).transpose(0, 2, 1)
