"""Time-ordered splits with purge gaps, walk-forward folds, and sequence windows.

The index arithmetic in the known-answer tests is worked out in the comments.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from n1v1.ml.splits import Fold, Split, sequence_windows, train_val_split, walk_forward_folds


def rows(s: slice) -> range:
    return range(s.start, s.stop)


# --- train_val_split


def test_train_val_split_by_hand() -> None:
    # n_val = round(0.2 * 100) = 20 -> val [80, 100); purge 15 -> gap [65, 80); train [0, 65)
    assert train_val_split(100, 0.2, 15) == Split(train=slice(0, 65), val=slice(80, 100))
    # n_val = round(0.25 * 1003) = round(250.75) = 251 -> val [752, 1003), train [0, 752 - 10)
    assert train_val_split(1003, 0.25, 10) == Split(train=slice(0, 742), val=slice(752, 1003))


@pytest.mark.parametrize(("n", "horizon"), [(100, 1), (100, 15), (5000, 60), (731, 7)])
def test_no_training_label_reaches_into_validation(n: int, horizon: int) -> None:
    split = train_val_split(n, 0.2, purge=horizon)
    first_val = split.val.start
    # the label of train row i looks at close[i + horizon]: it must lie before the first val row
    assert all(i + horizon < first_val for i in rows(split.train))
    assert split.val.stop == n and split.train.start == 0


def test_a_purge_shorter_than_the_horizon_would_leak() -> None:
    """The check above can fail: with purge = h - 1 the last training label sees row first_val."""
    split = train_val_split(100, 0.2, purge=14)
    assert (split.train.stop - 1) + 15 == split.val.start


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((10, 0.2, 9), "n: 10 rows are too few"),  # 2 val + 9 purge leaves no train row
        ((3, 0.1, 0), "n: 3 rows are too few"),  # round(0.3) = 0 validation rows
        ((100, 0.0, 5), "val_fraction"),
        ((100, 1.0, 5), "val_fraction"),
        ((100, 0.2, -1), "purge"),
        ((100.0, 0.2, 5), "n: must be an integer"),
    ],
)
def test_train_val_split_errors_name_the_argument(args: tuple, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        train_val_split(*args)


# --- walk_forward_folds


def test_expanding_folds_by_hand() -> None:
    # n=1000, 4 folds x 100 test rows -> tests [600,700) .. [900,1000); pre = 600 rows before them
    # val = round(0.2*600) = 120, calib = round(0.1*600) = 60, purge 10.
    # fold 0: test starts 600; calib [600-10-60, 590) = [530, 590); val [530-10-120, 520) =
    # [400, 520); train [0, 400-10) = [0, 390).  Each later fold moves everything by 100,
    # except that expanding training always starts at 0.
    folds = walk_forward_folds(1000, n_folds=4, test_size=100, purge=10, mode="expanding")
    assert folds[0] == Fold(0, slice(0, 390), slice(400, 520), slice(530, 590), slice(600, 700))
    assert folds[1] == Fold(1, slice(0, 490), slice(500, 620), slice(630, 690), slice(700, 800))
    assert folds[3] == Fold(3, slice(0, 690), slice(700, 820), slice(830, 890), slice(900, 1000))


def test_rolling_folds_by_hand() -> None:
    # default train_size = fold 0's 390 rows; fold 1 train ends at 490 -> [100, 490)
    folds = walk_forward_folds(1000, n_folds=4, test_size=100, purge=10, mode="rolling")
    assert folds[0].train == slice(0, 390) and folds[1].train == slice(100, 490)
    assert folds[3].train == slice(300, 690)
    # explicit train_size 200: fold 0 [390-200, 390) = [190, 390), fold 3 [490, 690)
    folds = walk_forward_folds(
        1000, n_folds=4, test_size=100, purge=10, mode="rolling", train_size=200
    )
    assert folds[0].train == slice(190, 390) and folds[3].train == slice(490, 690)
    assert folds[2] == Fold(2, slice(390, 590), slice(600, 720), slice(730, 790), slice(800, 900))


PARAMS = list(
    itertools.product(
        [1000, 2000, 4321],  # n
        [1, 3, 5],  # n_folds
        [50, 97],  # test_size
        [0, 15, 60],  # purge = label horizon
        ["rolling", "expanding"],
    )
)


@pytest.mark.parametrize(("n", "n_folds", "test_size", "purge", "mode"), PARAMS)
def test_fold_invariants(n: int, n_folds: int, test_size: int, purge: int, mode: str) -> None:
    folds = walk_forward_folds(n, n_folds=n_folds, test_size=test_size, purge=purge, mode=mode)
    assert [f.number for f in folds] == list(range(n_folds))
    for f in folds:
        blocks = [f.train, f.val, f.calib, f.test]
        assert all(b.stop > b.start >= 0 for b in blocks)
        for before, after in itertools.pairwise(blocks):
            # the purge gap between consecutive blocks is at least the label horizon, so no
            # label of a row in one block looks into the next block
            assert after.start - before.stop >= purge
            assert all(i + purge < after.start for i in rows(before))
    tests = [f.test for f in folds]
    assert tests[-1].stop == n and all(t.stop - t.start == test_size for t in tests)
    for a, b in itertools.pairwise(tests):
        assert b.start == a.stop  # consecutive, no overlap, in time order
    lengths = {f.train.stop - f.train.start for f in folds}
    if mode == "rolling":
        assert len(lengths) == 1
    else:
        assert all(f.train.start == 0 for f in folds)
        assert [f.train.stop for f in folds] == [
            folds[0].train.stop + k * test_size for k in range(n_folds)
        ]


def test_zero_calibration_fraction_gives_an_empty_calib_block() -> None:
    fold = walk_forward_folds(
        1000, n_folds=1, test_size=100, purge=5, mode="expanding", calib_fraction=0.0
    )[0]
    # pre = 900, val = 180, calib = 0: train [0, 900-15-180) = [0, 705), val [710, 890)
    assert fold.calib.stop == fold.calib.start == 895
    assert fold.train == slice(0, 705) and fold.val == slice(710, 890)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n": 300, "n_folds": 3, "test_size": 100}, "n: 300 rows are too few"),  # pre = 0
        ({"n": 450, "n_folds": 3, "test_size": 100, "purge": 40}, "n: 450 rows are too few"),
        ({"mode": "rolling", "train_size": 391}, "train_size: 391 rows do not fit"),
        ({"mode": "expanding", "train_size": 100}, "train_size: only used by mode='rolling'"),
        ({"mode": "sliding"}, "mode"),
        ({"n_folds": 0}, "n_folds"),
        ({"test_size": 0}, "test_size"),
        ({"purge": -1}, "purge"),
        ({"val_fraction": 0.6, "calib_fraction": 0.4}, r"val_fraction \+ calib_fraction"),
        ({"calib_fraction": 1.5}, "calib_fraction"),
    ],
)
def test_fold_errors_name_the_argument(kwargs: dict, name: str) -> None:
    args = {"n": 1000, "n_folds": 4, "test_size": 100, "purge": 10, "mode": "expanding"}
    with pytest.raises(ValueError, match=name):
        walk_forward_folds(**{**args, **kwargs})


# --- sequence_windows


def test_sequence_windows_alignment_by_hand() -> None:
    X = np.arange(12, dtype=np.float32).reshape(6, 2)  # row r = [2r, 2r+1]
    y = np.arange(6) * 10  # label of row r is 10r
    w = sequence_windows(X, 3)
    assert w.shape == (4, 3, 2)  # 6 - 3 + 1 windows of 3 rows x 2 features
    # window 0 = rows 0, 1, 2; window 3 = rows 3, 4, 5
    np.testing.assert_array_equal(w[0], [[0, 1], [2, 3], [4, 5]])
    np.testing.assert_array_equal(w[3], [[6, 7], [8, 9], [10, 11]])
    aligned = y[3 - 1 :]  # window j ends at row j + 2, whose label is y[j + 2]
    np.testing.assert_array_equal(aligned, [20, 30, 40, 50])
    np.testing.assert_array_equal(w[:, -1, 0] / 2 * 10, aligned)


def test_sequence_windows_is_a_view_not_a_copy() -> None:
    X = np.zeros((1000, 8), dtype=np.float32)
    w = sequence_windows(X, 32)
    assert np.shares_memory(w, X) and not w.flags.owndata and not w.flags.writeable
    X[40, 5] = 7.0  # a change in X shows through every window that contains row 40
    assert w[40 - 31, 31, 5] == 7.0 and w[40, 0, 5] == 7.0


def test_sequence_windows_errors() -> None:
    with pytest.raises(ValueError, match="window: 7 is longer than X"):
        sequence_windows(np.zeros((6, 2)), 7)
    with pytest.raises(ValueError, match="window"):
        sequence_windows(np.zeros((6, 2)), 0)
    with pytest.raises(ValueError, match="2-D"):
        sequence_windows(np.zeros(6), 2)
