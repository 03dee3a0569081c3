"""Labels on a hand-computed example, their alignment, and the assembled training set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1.data import generate_bars
from n1v1.ml.dataset import Dataset, assemble
from n1v1.ml.features import FeatureSpec, build_features, feature_names, feature_warmup
from n1v1.ml.labels import LabelSpec, classify_returns, forward_returns, make_labels

# Eight closes; with h = 2 the forward returns close[t+2]/close[t] - 1 are
#   t=0: 100.4/100.0 - 1 = +0.004000   > +0.0025 -> long
#   t=1:  99.9/100.1 - 1 = -0.001998   inside the band -> flat
#   t=2:  99.5/100.4 - 1 = -0.008964   < -0.0025 -> short
#   t=3:  99.6/ 99.9 - 1 = -0.003003   < -0.0025 -> short
#   t=4: 100.3/ 99.5 - 1 = +0.008040   > +0.0025 -> long
#   t=5:  99.8/ 99.6 - 1 = +0.002008   inside the band -> flat
#   t=6, t=7: no close two bars later -> no label, dropped
CLOSES = [100.0, 100.1, 100.4, 99.9, 99.5, 99.6, 100.3, 99.8]
SPEC = LabelSpec(horizon=2, fee=0.001, margin=0.0005)


def tiny_bars() -> pd.DataFrame:
    close = np.array(CLOSES)
    index = pd.date_range("2024-01-01", periods=8, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": np.ones(8)},
        index=index,
    )


def test_threshold_is_fees_both_ways_plus_margin() -> None:
    assert SPEC.threshold == pytest.approx(0.0025, abs=1e-15)  # 2 * 0.001 + 0.0005
    assert SPEC.n_classes == 2 and LabelSpec(kind="ternary").n_classes == 3


def test_forward_returns_by_hand() -> None:
    fwd = forward_returns(np.array(CLOSES), 2)
    expected = [0.004, -0.001998, -0.008964, -0.003003, 0.008040, 0.002008]
    np.testing.assert_allclose(fwd[:6], expected, atol=5e-7)  # the rounded decimals above
    assert np.isnan(fwd[6:]).all() and fwd.shape == (8,)


def test_binary_labels_by_hand_and_last_h_rows_dropped() -> None:
    labels = make_labels(tiny_bars(), SPEC)
    assert labels.tolist() == [1, 0, 0, 0, 1, 0]  # long only at t=0 and t=4
    assert labels.dtype == np.int64 and labels.name == "label"
    assert labels.index.equals(tiny_bars().index[:6])  # 8 bars - h = 6 labels, none invented


def test_ternary_labels_by_hand() -> None:
    labels = make_labels(tiny_bars(), SPEC.model_copy(update={"kind": "ternary"}))
    assert labels.tolist() == [2, 1, 0, 0, 2, 1]  # 0 short, 1 flat, 2 long
    assert len(labels) == 6


def test_a_return_equal_to_the_threshold_is_not_a_trade() -> None:
    # fee = margin = 0 -> threshold 0; an unchanged price (return exactly 0) is flat, not long
    spec = LabelSpec(horizon=1, fee=0.0, margin=0.0)
    fwd = np.array([0.0, 1e-9, -1e-9])
    assert classify_returns(fwd, spec).tolist() == [0, 1, 0]
    ternary = spec.model_copy(update={"kind": "ternary"})
    assert classify_returns(fwd, ternary).tolist() == [1, 2, 0]


def test_fewer_bars_than_the_horizon_gives_no_labels() -> None:
    labels = make_labels(tiny_bars().iloc[:2], SPEC)
    assert len(labels) == 0 and labels.dtype == np.int64


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="horizon"):
        forward_returns(np.array(CLOSES), 0)
    with pytest.raises(ValueError, match="horizon"):
        LabelSpec(horizon=0)
    with pytest.raises(ValueError, match="kind"):
        LabelSpec(kind="quaternary")
    with pytest.raises(ValueError, match="fee"):
        LabelSpec(fee=-0.001)
    bad = np.array(CLOSES)
    bad[4] = np.nan
    with pytest.raises(
        ValueError, match="close: prices must be finite and > 0, found nan at index 4"
    ):
        forward_returns(bad, 2)
    with pytest.raises(ValueError, match="forward_return"):
        classify_returns(np.array([0.01, np.nan]), SPEC)


# --- assemble


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars(3000, seed=3)


@pytest.mark.parametrize("kind", ["binary", "ternary"])
def test_assemble_rows_are_time_ordered_finite_and_aligned(bars: pd.DataFrame, kind: str) -> None:
    features = FeatureSpec()
    labels = LabelSpec(horizon=15, kind=kind)
    ds = assemble(bars, features, labels)
    assert isinstance(ds, Dataset)
    # rows: everything after the 60-row warm-up and before the last 15 bars: 3000 - 60 - 15
    assert len(ds) == len(bars) - feature_warmup(features) - labels.horizon == 2925
    assert ds.X.dtype == np.float32 and ds.X.shape == (2925, len(feature_names(features)))
    assert ds.y.dtype == np.int64 and ds.forward_return.dtype == np.float64
    assert np.isfinite(ds.X).all() and np.isfinite(ds.forward_return).all()
    assert ds.index.is_monotonic_increasing and ds.index.is_unique
    assert ds.feature_names == feature_names(features)

    pos = bars.index.get_indexer(ds.index)
    close = bars["close"].to_numpy()
    # forward_return[i] is the return of the row's own bar over the next h bars
    np.testing.assert_array_equal(ds.forward_return, close[pos + 15] / close[pos] - 1.0)
    thr = 0.0025
    if kind == "binary":
        expected_y = (ds.forward_return > thr).astype(np.int64)
    else:
        expected_y = np.where(ds.forward_return > thr, 2, np.where(ds.forward_return < -thr, 0, 1))
    np.testing.assert_array_equal(ds.y, expected_y)
    assert set(np.unique(ds.y)) == set(range(labels.n_classes))  # every class occurs here
    # the features of a row are that bar's features
    frame = build_features(bars, features)
    np.testing.assert_array_equal(ds.X, frame.to_numpy()[pos].astype(np.float32))


def test_assemble_never_labels_the_last_h_bars(bars: pd.DataFrame) -> None:
    ds = assemble(bars, FeatureSpec(), LabelSpec(horizon=30))
    assert ds.index[-1] == bars.index[-31]  # bar n-1-h is the last with a close h bars later


def test_dataset_rejects_inconsistent_arrays() -> None:
    with pytest.raises(ValueError, match="X: shape"):
        Dataset(
            X=np.zeros((3, 2), np.float32),
            y=np.zeros(3, np.int64),
            index=pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC"),
            feature_names=["a"],
            forward_return=np.zeros(3),
        )


# --- sessions: holes of months (the bundled minute files join days months apart)
def test_a_hole_longer_than_60_bars_starts_a_new_session() -> None:
    from n1v1.ml.dataset import session_ids

    start = pd.Timestamp("2024-01-01", tz="UTC")
    minutes = [0, 1, 2, 63, 64, 126, 127]  # holes: 60 missing bars (2 -> 63), 61 (64 -> 126)
    index = pd.DatetimeIndex([start + pd.Timedelta(minutes=m) for m in minutes])
    # the median spacing is 1 minute; 60 missing bars can still be filled, 61 cannot
    np.testing.assert_array_equal(session_ids(index), [0, 0, 0, 0, 0, 1, 1])


def test_the_newest_bars_session_warm_up_agrees_with_the_mask() -> None:
    # The live engine asks only about the newest bar: every prefix of an index with holes of
    # every kind (none, fillable, session breaks, in the warm-up and after it) must agree.
    from n1v1.ml.dataset import last_bar_in_session_warmup, session_warmup_mask

    rng = np.random.default_rng(7)
    steps = rng.choice([1, 1, 1, 1, 2, 30, 61, 62, 500], size=400)
    minutes = np.concatenate([[0], np.cumsum(steps)])
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(minutes, "m"))
    seen = set()
    for warmup in (0, 1, 5, 20):
        for end in range(1, len(index) + 1):
            prefix = index[:end]
            expected = bool(session_warmup_mask(prefix, warmup)[-1])
            assert last_bar_in_session_warmup(prefix, warmup) is expected, (warmup, end)
            seen.add(expected)
    assert seen == {True, False}  # both answers were exercised


def test_no_label_or_feature_reaches_across_a_session_break(bars: pd.DataFrame) -> None:
    # bars 1500.. a day later: a break. Each session keeps rows warm-up .. its end - h - 1:
    # session 0: rows 60 .. 1484, session 1: rows 1560 .. 2984; 1425 each, 3000 - 2 (60 + 15) in all
    moved = bars.index.where(np.arange(len(bars)) < 1500, bars.index + pd.Timedelta("1D"))
    gapped = bars.set_axis(pd.DatetimeIndex(moved, name="timestamp"))
    features, labels = FeatureSpec(), LabelSpec(horizon=15)
    ds = assemble(gapped, features, labels)
    pos = gapped.index.get_indexer(ds.index)
    expected = np.r_[60:1485, 1560:2985]
    np.testing.assert_array_equal(pos, expected)
    close = gapped["close"].to_numpy()
    np.testing.assert_array_equal(ds.forward_return, close[pos + 15] / close[pos] - 1.0)
    # without the break the same bars give 3000 - 60 - 15 = 2925 rows: 75 more, the 15 rows before
    # the break (labels across it) and the 60 after it (look-backs across it)
    assert len(assemble(bars, features, labels)) == len(ds) + 75
