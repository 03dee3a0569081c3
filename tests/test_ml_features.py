"""ML features: known values, warm-ups, no lookahead, the definition hash, input errors, speed.

Expected values are worked out by hand (in the comments) from the formulas in docs/ml/features.md;
features defined as "indicator output / 100" are compared with the indicator they are defined by.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from n1v1 import indicators as ind
from n1v1.data import generate_bars
from n1v1.ml import features as feat
from n1v1.ml.features import (
    FeatureSpec,
    build_features,
    feature_hash,
    feature_names,
    feature_warmup,
    feature_warmups,
)

SMALL = FeatureSpec(
    return_horizons=(1, 2),
    volatility_horizons=(3,),
    rsi_period=2,
    macd=(2, 3, 2),
    atr_period=2,
    bollinger_period=3,
    bollinger_k=2.0,
    volume_z_period=3,
    adx_period=2,
)
CLOSE = [100.0, 102.0, 101.0, 103.0, 104.0, 102.0, 105.0, 106.0]
LOG_VOLUME = [0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0, 0.0]  # volume = expm1 of these


def small_bars() -> pd.DataFrame:
    """8 bars every 3 hours from midnight UTC: times of day 0h, 3h, ..., 21h."""
    close = np.array(CLOSE)
    index = pd.date_range("2024-03-05", periods=8, freq="3h", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": close,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.expm1(LOG_VOLUME),
        },
        index=index,
    )


def test_default_names_and_order() -> None:
    assert feature_names(FeatureSpec()) == [
        "ret_1",
        "ret_5",
        "ret_15",
        "ret_60",
        "vol_15",
        "vol_60",
        "rsi_14",
        "macd_hist_12_26_9",
        "range_atr_14",
        "atr_close_14",
        "bb_pctb_20",
        "volume_z_60",
        "adx_14",
        "tod_sin",
        "tod_cos",
    ]
    assert "tod_sin" not in feature_names(FeatureSpec(time_of_day=False))


def test_frame_shape_dtype_and_index() -> None:
    bars = small_bars()
    frame = build_features(bars, SMALL)
    assert list(frame.columns) == feature_names(SMALL)
    assert (frame.dtypes == np.float64).all()
    assert frame.index.equals(bars.index)


def test_log_returns_by_hand() -> None:
    f = build_features(small_bars(), SMALL)
    # ret_1[1] = ln(102/100); ret_2[2] = ln(101/100); ret_2[7] = ln(106/102)
    assert f["ret_1"].iloc[1] == pytest.approx(math.log(1.02), abs=1e-15)
    assert f["ret_2"].iloc[2] == pytest.approx(math.log(1.01), abs=1e-15)
    assert f["ret_2"].iloc[7] == pytest.approx(math.log(106 / 102), abs=1e-15)
    assert np.isnan(f["ret_1"].iloc[0]) and f["ret_2"].iloc[:2].isna().all()


def test_volatility_is_population_std_of_one_bar_log_returns() -> None:
    f = build_features(small_bars(), SMALL)
    # vol_3 at bar 3 uses the 1-bar returns of bars 1, 2, 3: ln(102/100), ln(101/102), ln(103/101)
    r = [math.log(102 / 100), math.log(101 / 102), math.log(103 / 101)]
    mean = sum(r) / 3
    expected = math.sqrt(sum((x - mean) ** 2 for x in r) / 3)
    assert f["vol_3"].iloc[3] == pytest.approx(expected, rel=1e-12)
    assert f["vol_3"].iloc[:3].isna().all()  # bar 2 has only two 1-bar returns


def test_bollinger_percent_b_by_hand() -> None:
    f = build_features(small_bars(), SMALL)
    s = math.sqrt(2 / 3)  # population std of both {100, 102, 101} and {102, 101, 103}
    # bar 2: close 101 is the window mean, so %B = (0 + 2s) / 4s = 0.5
    assert f["bb_pctb_3"].iloc[2] == pytest.approx(0.5, abs=1e-12)
    # bar 3: mean 102, close 103: %B = (1 + 2s) / 4s = 0.5 + 1/(4s) = 0.80619
    assert f["bb_pctb_3"].iloc[3] == pytest.approx(0.5 + 1 / (4 * s), rel=1e-12)


def test_volume_zscore_by_hand_and_zero_on_a_constant_window() -> None:
    z = build_features(small_bars(), SMALL)["volume_z_3"].to_numpy()
    # log1p(volume) = 0, 1, 2, 2, 2, 2, 1, 0
    # bar 2: window {0, 1, 2}: mean 1, std sqrt(2/3) -> z = 1 / sqrt(2/3) = 1.2247
    assert z[2] == pytest.approx(1 / math.sqrt(2 / 3), rel=1e-12)
    # bars 4 and 5: window {2, 2, 2} is constant -> 0 by convention (the bar is exactly average)
    assert z[4] == 0.0 and z[5] == 0.0
    # bar 6: window {2, 2, 1}: mean 5/3, std sqrt(2/9), z = (1 - 5/3) / sqrt(2/9) = -sqrt(2)
    assert z[6] == pytest.approx(-math.sqrt(2), rel=1e-12)


def test_time_of_day_in_utc() -> None:
    f = build_features(small_bars(), SMALL)
    # bars at 0h, 3h, ..., 21h UTC: angle = 2*pi*hours/24 = 0, pi/4, pi/2, ..., 7*pi/4
    half = math.sqrt(2) / 2
    np.testing.assert_allclose(
        f["tod_sin"], [0, half, 1, half, 0, -half, -1, -half], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        f["tod_cos"], [1, half, 0, -half, -1, -half, 0, half], rtol=0, atol=1e-12
    )
    # the same instants in another time zone give the same (UTC) time of day
    tokyo = small_bars().tz_convert("Asia/Tokyo")
    pd.testing.assert_frame_equal(
        build_features(tokyo, SMALL).reset_index(drop=True), f.reset_index(drop=True)
    )


def test_indicator_based_features_follow_their_definitions() -> None:
    bars = small_bars()
    f = build_features(bars, SMALL)
    h, lo, c = bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy()
    atr = ind.atr(h, lo, c, 2)
    np.testing.assert_array_equal(f["rsi_2"], ind.rsi(c, 2) / 100)
    np.testing.assert_array_equal(f["macd_hist_2_3_2"], ind.macd(c, 2, 3, 2)[2] / c)
    np.testing.assert_array_equal(f["range_atr_2"], (h - lo) / atr)  # every bar's range is 2
    np.testing.assert_array_equal(f["atr_close_2"], atr / c)
    np.testing.assert_array_equal(f["adx_2"], ind.adx(h, lo, c, 2)[0] / 100)


def test_warmups_match_the_documented_table() -> None:
    # default: ret h; vol h; rsi 14; macd 26+9-2 = 33; atr 13; bollinger 19; volume z 59;
    # adx 2*14-1 = 27; time of day 0 -> all finite from row max(...) = 60
    assert feature_warmup(FeatureSpec()) == 60
    warm = feature_warmups(FeatureSpec())
    assert warm["macd_hist_12_26_9"] == 33 and warm["adx_14"] == 27 and warm["volume_z_60"] == 59
    frame = build_features(generate_bars(400, seed=5), FeatureSpec())
    for name, count in warm.items():
        column = frame[name].to_numpy()
        assert np.isnan(column[:count]).all(), name
        assert np.isfinite(column[count:]).all(), name
    assert frame.iloc[59].isna().any() and np.isfinite(frame.iloc[60:].to_numpy()).all()


def test_flat_market_is_finite_after_the_warmup() -> None:
    """Constant price and zero volume: every degenerate ratio has its documented value."""
    n = 200
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    price = np.full(n, 50.0)
    bars = pd.DataFrame(
        {"open": price, "high": price, "low": price, "close": price, "volume": np.zeros(n)},
        index=index,
    )
    f = build_features(bars).iloc[feature_warmup(FeatureSpec()) :]
    assert np.isfinite(f.to_numpy()).all()
    assert (f["bb_pctb_20"] == 0.5).all()
    assert (f["volume_z_60"] == 0.0).all()
    assert (f["range_atr_14"] == 0.0).all()
    assert (f["rsi_14"] == 0.5).all() and (f["adx_14"] == 0.0).all()
    assert (f["vol_60"] == 0.0).all() and (f["ret_60"] == 0.0).all()


@pytest.mark.parametrize("spec", [FeatureSpec(), SMALL], ids=["default", "small"])
def test_no_lookahead_on_random_truncations(spec: FeatureSpec) -> None:
    """build_features(bars[:k]) == build_features(bars)[:k], bit for bit, NaN positions too."""
    bars = generate_bars(3000, seed=42)
    full = build_features(bars, spec)
    rng = np.random.default_rng(7)
    warm = feature_warmup(spec)
    cuts = [0, 1, warm - 1, warm, warm + 1, len(bars), *rng.integers(2, len(bars), 25)]
    for k in cuts:
        part = build_features(bars.iloc[:k], spec)
        expected = full.iloc[:k]
        assert part.index.equals(expected.index), k
        np.testing.assert_array_equal(part.to_numpy(), expected.to_numpy(), err_msg=f"k={k}")


def test_feature_matrix_from_handed_over_columns_equals_the_frame() -> None:
    """The live path (columns the window already holds) gives the frame's numbers, bit for bit,
    and still refuses a bad close, naming the row."""
    from n1v1.ml.features import feature_matrix

    bars = generate_bars(800, seed=3)
    columns = [bars[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close", "volume")]
    expected = build_features(bars).to_numpy()
    np.testing.assert_array_equal(feature_matrix(bars, FeatureSpec(), columns), expected)
    np.testing.assert_array_equal(feature_matrix(bars, FeatureSpec()), expected)
    columns[2] = columns[2].copy()
    columns[2][17] = 0.0
    with pytest.raises(ValueError, match=r"close must be finite and > 0.*row 17"):
        feature_matrix(bars, FeatureSpec(), columns)


def test_hash_is_sha256_of_the_documented_canonical_json() -> None:
    # Written out by hand from the definition: sorted keys, no spaces, the spec's JSON dump.
    spec_json = (
        '{"adx_period":14,"atr_period":14,"bollinger_k":2.0,"bollinger_period":20,'
        '"macd":[12,26,9],"return_horizons":[1,5,15,60],"rsi_period":14,'
        '"time_of_day":true,"volatility_horizons":[15,60],"volume_z_period":60}'
    )
    names = (
        '["ret_1","ret_5","ret_15","ret_60","vol_15","vol_60","rsi_14","macd_hist_12_26_9",'
        '"range_atr_14","atr_close_14","bb_pctb_20","volume_z_60","adx_14","tod_sin","tod_cos"]'
    )
    text = (
        f'{{"feature_code_version":{feat.FEATURE_CODE_VERSION},"names":{names},"spec":{spec_json}}}'
    )
    expected = hashlib.sha256(text.encode()).hexdigest()[:16]
    assert feature_hash(FeatureSpec()) == expected
    assert len(expected) == 16 and int(expected, 16) >= 0


def test_hash_changes_with_every_field_and_the_code_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    changed = {
        "return_horizons": (1, 5, 15),
        "volatility_horizons": (15, 30),
        "rsi_period": 7,
        "macd": (12, 26, 10),
        "atr_period": 10,
        "bollinger_period": 21,
        "bollinger_k": 2.5,  # does not change any name: the hash still must change
        "volume_z_period": 30,
        "adx_period": 10,
        "time_of_day": False,
    }
    assert set(changed) == set(FeatureSpec.model_fields), "a new field needs a case here"
    base = feature_hash(FeatureSpec())
    hashes = {feature_hash(FeatureSpec(**{k: v})) for k, v in changed.items()}
    assert base not in hashes and len(hashes) == len(changed)
    monkeypatch.setattr(feat, "FEATURE_CODE_VERSION", feat.FEATURE_CODE_VERSION + 1)
    assert feature_hash(FeatureSpec()) != base


def test_hash_is_the_same_in_another_process_and_after_a_json_round_trip() -> None:
    spec = FeatureSpec(return_horizons=(2, 4), bollinger_k=1.5)
    code = (
        "from n1v1.ml.features import FeatureSpec, feature_hash\n"
        "print(feature_hash(FeatureSpec(return_horizons=(2, 4), bollinger_k=1.5)))"
    )
    # A different string-hash salt than this process: Python's hash() would give other values.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    )
    assert out.stdout.strip() == feature_hash(spec)
    restored = FeatureSpec.model_validate(json.loads(json.dumps(spec.model_dump())))
    assert feature_hash(restored) == feature_hash(spec)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rsi_period": 14.0}, "rsi_period"),
        ({"rsi_period": 0}, "rsi_period"),
        ({"macd": (26, 12, 9)}, "macd"),
        ({"return_horizons": (5, 5)}, "return_horizons"),
        ({"volatility_horizons": (1,)}, "volatility_horizons"),
        ({"bollinger_k": float("nan")}, "bollinger_k"),
        ({"lookahead": 1}, "lookahead"),
    ],
)
def test_bad_spec_is_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        FeatureSpec(**kwargs)


def test_bad_bars_are_rejected_with_the_column_and_row() -> None:
    bars = small_bars()
    with pytest.raises(ValueError, match=r"missing column\(s\) \['volume'\]"):
        build_features(bars.drop(columns="volume"), SMALL)
    zero = bars.copy()
    zero.iloc[3, zero.columns.get_loc("close")] = 0.0
    with pytest.raises(ValueError, match=r"close must be finite and > 0.*row 3"):
        build_features(zero, SMALL)
    gap = bars.copy()
    gap.iloc[5, gap.columns.get_loc("high")] = np.nan
    with pytest.raises(ValueError, match="high: inputs must be finite; found nan at index 5"):
        build_features(gap, SMALL)
    with pytest.raises(ValueError, match="strictly increasing"):
        build_features(bars.iloc[::-1], SMALL)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        build_features(bars.reset_index(drop=True), SMALL)
