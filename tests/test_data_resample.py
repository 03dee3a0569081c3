"""resample_bars, parse_timeframe and infer_timeframe: known answers computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from n1v1.data import (
    DataError,
    infer_timeframe,
    load_dataset,
    parse_timeframe,
    resample_bars,
    validate_bars,
)

DAY0 = pd.Timestamp("2024-01-01", tz="UTC")


def bars_at(
    minutes: list[int], rows: list[tuple[float, float, float, float, float]]
) -> pd.DataFrame:
    index = pd.DatetimeIndex(DAY0 + pd.to_timedelta(minutes, unit="min"), name="timestamp")
    frame = pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"])
    frame.attrs = {"symbol": "T/T", "source": "hand"}
    return validate_bars(frame.astype(np.float64))


def at(minute: int) -> pd.Timestamp:
    return DAY0 + pd.Timedelta(minutes=minute)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m", 60),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("4h", 14400),
        ("1d", 86400),
        ("30s", 30),
    ],
)
def test_parse_timeframe(text: str, seconds: int) -> None:
    assert parse_timeframe(text) == pd.Timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "m", "5", "5x", "0m", "-1h", "1M", "1w", "1.5h", "h1"])
def test_parse_timeframe_rejects_bad_input(bad: str) -> None:
    with pytest.raises(DataError, match="timeframe"):
        parse_timeframe(bad)


def test_parse_timeframe_rejects_non_strings() -> None:
    with pytest.raises(DataError, match="must be a string"):
        parse_timeframe(5)  # type: ignore[arg-type]
    assert parse_timeframe(pd.Timedelta(minutes=3)) == pd.Timedelta(minutes=3)


def test_infer_timeframe_is_the_median_spacing() -> None:
    # Spacings 1, 1, 3, 1 minutes: the median is 1 minute, the mean would be 1.5.
    flat = [(1.0, 1.0, 1.0, 1.0, 1.0)] * 5
    assert infer_timeframe(bars_at([0, 1, 2, 5, 6], flat)) == pd.Timedelta(minutes=1)
    with pytest.raises(DataError, match="need at least 2"):
        infer_timeframe(bars_at([0], flat[:1]))


# Twelve hand-made 1-minute bars: bucket 00:00 is complete, bucket 00:05 misses 00:07 (a gap) but
# data continues past it, bucket 00:10 has no bars at all, bucket 00:15 ends the data early.
MINUTES = [0, 1, 2, 3, 4, 5, 6, 8, 9, 15, 16, 17]
ROWS = [
    # open, high, low, close, volume
    (10.0, 12.0, 9.0, 11.0, 1.0),  # 00:00
    (11.0, 13.0, 10.0, 12.0, 2.0),  # 00:01
    (12.0, 12.5, 8.0, 9.0, 3.0),  # 00:02
    (9.0, 10.0, 8.5, 10.0, 4.0),  # 00:03
    (10.0, 11.0, 9.5, 10.5, 5.0),  # 00:04
    (10.5, 11.0, 10.0, 10.8, 0.5),  # 00:05
    (10.8, 14.0, 10.7, 13.0, 1.5),  # 00:06
    (13.0, 13.5, 12.0, 12.2, 2.5),  # 00:08
    (12.2, 12.9, 11.9, 12.4, 3.5),  # 00:09
    (12.4, 12.6, 12.3, 12.5, 1.0),  # 00:15
    (12.5, 12.7, 12.4, 12.6, 1.0),  # 00:16
    (12.6, 12.8, 12.5, 12.7, 1.0),  # 00:17
]


def test_resample_1m_to_5m_known_answer() -> None:
    out = resample_bars(bars_at(MINUTES, ROWS), "5m")
    # Bucket 00:00 (bars 00:00-00:04): open 10 (first), high max(12,13,12.5,10,11) = 13,
    #   low min(9,10,8,8.5,9.5) = 8, close 10.5 (last), volume 1+2+3+4+5 = 15.
    # Bucket 00:05 (bars 00:05, 00:06, 00:08, 00:09): open 10.5, high max(11,14,13.5,12.9) = 14,
    #   low min(10,10.7,12,11.9) = 10, close 12.4, volume 0.5+1.5+2.5+3.5 = 8.
    # Bucket 00:10: no source bars -> dropped.
    # Bucket 00:15: last bar 00:17 + 1 min = 00:18 < bucket end 00:20 -> incomplete, dropped.
    expected = pd.DataFrame(
        [(10.0, 13.0, 8.0, 10.5, 15.0), (10.5, 14.0, 10.0, 12.4, 8.0)],
        index=pd.DatetimeIndex([at(0), at(5)], name="timestamp"),
        columns=["open", "high", "low", "close", "volume"],
    )
    pd.testing.assert_frame_equal(out, expected)
    assert out.attrs == {"symbol": "T/T", "source": "hand"}


def test_trailing_bucket_is_kept_once_its_last_bar_is_present() -> None:
    # Add 00:19 (close 12.9): 00:19 + 1 min = 00:20 = bucket end, so bucket 00:15 is complete:
    # open 12.4, high max(12.6,12.7,12.8,13) = 13, low min(12.3,12.4,12.5,12.7) = 12.3,
    # close 12.9, volume 1+1+1+2 = 5.
    out = resample_bars(bars_at([*MINUTES, 19], [*ROWS, (12.7, 13.0, 12.7, 12.9, 2.0)]), "5m")
    assert out.index.tolist() == [at(0), at(5), at(15)]
    assert out.loc[at(15)].tolist() == [12.4, 13.0, 12.3, 12.9, 5.0]


def test_trailing_bucket_is_kept_when_only_inner_bars_are_missing() -> None:
    # Drop 00:16-00:17, add 00:19: the last expected bar (00:19) is present, so bucket 00:15 is
    # complete even with a hole: open 12.4, high 13, low 12.3, close 12.9, volume 1+2 = 3.
    minutes = [*MINUTES[:10], 19]
    rows = [*ROWS[:10], (12.7, 13.0, 12.7, 12.9, 2.0)]
    out = resample_bars(bars_at(minutes, rows), "5m")
    assert out.loc[at(15)].tolist() == [12.4, 13.0, 12.3, 12.9, 3.0]


def test_first_bucket_is_labelled_by_its_aligned_open_time() -> None:
    # Data starting at 00:03 still falls in the epoch-aligned bucket 00:00 (kept, though partial):
    # open 9 (bar 00:03), high max(10, 11) = 11, low min(8.5, 9.5) = 8.5, close 10.5, volume 9.
    out = resample_bars(bars_at(MINUTES[3:9], ROWS[3:9]), "5m")
    assert out.index[0] == at(0)
    assert out.iloc[0].tolist() == [9.0, 11.0, 8.5, 10.5, 9.0]


def test_hourly_to_4h_and_daily_alignment() -> None:
    # 1h bars from 05:00 to 12:00 (8 bars), close = open + 1, open = 100 + hour.
    hours = list(range(5, 13))
    index = pd.DatetimeIndex(DAY0 + pd.to_timedelta(hours, unit="h"), name="timestamp")
    opens = np.array([100.0 + h for h in hours])
    frame = pd.DataFrame(
        {"open": opens, "high": opens + 2, "low": opens - 1, "close": opens + 1, "volume": 1.0},
        index=index,
    )
    out = resample_bars(frame, "4h")
    # Buckets 04:00 (bars 05-07), 08:00 (08-11) and 12:00 (12 only: 12:00 + 1h < 16:00 -> dropped).
    # 04:00: open 105, high 107+2 = 109, low 105-1 = 104, close 107+1 = 108, volume 3.
    # 08:00: open 108, high 111+2 = 113, low 108-1 = 107, close 111+1 = 112, volume 4.
    assert out.index.tolist() == [DAY0 + pd.Timedelta(hours=4), DAY0 + pd.Timedelta(hours=8)]
    assert out.to_numpy().tolist() == [[105, 109, 104, 108, 3], [108, 113, 107, 112, 4]]
    # A day bucket starts at UTC midnight; with the data ending at 12:00 it is incomplete.
    assert len(resample_bars(frame, "1d")) == 0


def test_target_must_be_a_multiple_of_the_source() -> None:
    five = bars_at([0, 5, 10], [(1.0, 1.0, 1.0, 1.0, 1.0)] * 3)
    with pytest.raises(DataError, match="cannot resample 5m bars to 1m"):
        resample_bars(five, "1m")
    with pytest.raises(DataError, match="cannot resample 5m bars to 7m"):
        resample_bars(five, "7m")
    assert len(resample_bars(five, "15m")) == 1  # 00:00-00:14, last bar 00:10 + 5m = 00:15


def test_unsorted_input_is_rejected() -> None:
    frame = bars_at(MINUTES, ROWS).iloc[::-1]
    with pytest.raises(DataError, match="strictly increasing"):
        resample_bars(frame, "5m")


def test_real_minute_data_resamples_to_valid_hours() -> None:
    minute = load_dataset("coinbase_BTC-EUR_1m")
    hourly = validate_bars(resample_bars(minute, "1h"))
    # Each hour's volume is the sum of the minutes in it (summed in another way here).
    first = hourly.index[0]
    inside = minute.loc[first : first + pd.Timedelta(minutes=59)]
    assert hourly["volume"].iloc[0] == pytest.approx(sum(inside["volume"].tolist()), rel=1e-12)
    assert hourly["high"].iloc[0] == max(inside["high"].tolist())
    assert hourly.attrs["symbol"] == "BTC/EUR"


@st.composite
def minute_bars(draw: st.DrawFn) -> pd.DataFrame:
    minutes = sorted(draw(st.sets(st.integers(0, 300), min_size=2, max_size=80)))
    rows = []
    for _ in minutes:
        open_ = draw(st.floats(1.0, 1000.0))
        close = draw(st.floats(1.0, 1000.0))
        up = draw(st.floats(0.0, 0.5))
        down = draw(st.floats(0.0, 0.5))
        volume = draw(st.floats(0.0, 1e6))
        rows.append(
            (open_, max(open_, close) * (1 + up), min(open_, close) * (1 - down), close, volume)
        )
    return bars_at(minutes, rows)


@settings(max_examples=60, deadline=None)
@given(bars=minute_bars(), timeframe=st.sampled_from(["1m", "2m", "5m", "15m", "1h"]))
def test_resample_preserves_volume_and_extremes_of_kept_bars(
    bars: pd.DataFrame, timeframe: str
) -> None:
    out = resample_bars(bars, timeframe, source_timeframe="1m")
    validate_bars(out)
    if len(out) == 0:
        # Only possible when every bar falls in the single, incomplete, trailing bucket.
        step = parse_timeframe(timeframe)
        assert bars.index[0].floor(step) == bars.index[-1].floor(step)
        return
    kept = bars[bars.index < out.index[-1] + parse_timeframe(timeframe)]
    assert out["volume"].sum() == pytest.approx(kept["volume"].sum(), rel=1e-9, abs=1e-9)
    assert out["high"].max() == kept["high"].max()
    assert out["low"].min() == kept["low"].min()
    assert out["open"].iloc[0] == kept["open"].iloc[0]
    assert out["close"].iloc[-1] == kept["close"].iloc[-1]
    # Only the last bucket may be dropped: every earlier bar is kept.
    assert len(bars) - len(kept) <= parse_timeframe(timeframe) // pd.Timedelta(minutes=1)
