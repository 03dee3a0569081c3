"""validate_bars, find_gaps and apply_gap_policy: every rule names the file, row and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from n1v1.data import (
    DataError,
    apply_gap_policy,
    find_gaps,
    load_bars,
    load_csv,
    load_dataset,
    validate_bars,
)

HEADER = "timestamp,open,high,low,close,volume"
GOOD = [
    "2024-01-01T00:00:00Z,100,101,99,100.5,1",
    "2024-01-01T00:01:00Z,100.5,102,100,101,2",
    "2024-01-01T00:02:00Z,101,101.5,100.5,101.2,3",
    "2024-01-01T00:03:00Z,101.2,101.3,100.9,101,4",
]


def write_csv(tmp_path: Path, rows: list[str], name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def replace(row: int, text: str) -> list[str]:
    """GOOD with data row ``row`` (1-based, as in error messages) replaced by ``text``."""
    rows = list(GOOD)
    rows[row - 1] = text
    return rows


def load_error(path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_csv(path)
    return info.value


def test_good_file_passes(tmp_path: Path) -> None:
    bars = load_csv(write_csv(tmp_path, GOOD))
    assert validate_bars(bars) is bars
    assert len(bars) == 4


@pytest.mark.parametrize(
    ("row", "text", "field", "words"),
    [
        # Row 3 repeats row 2's time.
        (3, "2024-01-01T00:01:00Z,101,101.5,100.5,101.2,3", "timestamp", "duplicates row 2"),
        # Row 3 is earlier than row 2 (00:00:30 < 00:01).
        (3, "2024-01-01T00:00:30Z,101,101.5,100.5,101.2,3", "timestamp", "is earlier than row 2"),
        (2, "2024-01-01T00:01:00Z,100.5,102,100,,2", "close", "NaN"),
        (4, "2024-01-01T00:03:00Z,101.2,inf,100.9,101,4", "high", "infinite"),
        (2, "2024-01-01T00:01:00Z,0,102,0,101,2", "open", "price 0.0 is not > 0"),
        (3, "2024-01-01T00:02:00Z,101,101.5,-1,101.2,3", "low", "not > 0"),
        # low 100.8 > min(open 101, close 100.6) = 100.6
        (
            2,
            "2024-01-01T00:01:00Z,101,102,100.8,100.6,2",
            "low",
            "low 100.8 is above min(open, close) = 100.6",
        ),
        # high 101.1 < max(open 101, close 101.2) = 101.2
        (
            3,
            "2024-01-01T00:02:00Z,101,101.1,100.5,101.2,3",
            "high",
            "high 101.1 is below max(open, close) = 101.2",
        ),
        (4, "2024-01-01T00:03:00Z,101.2,101.3,100.9,101,-0.5", "volume", "volume -0.5 is negative"),
    ],
)
def test_each_rule_names_file_row_and_field(
    tmp_path: Path, row: int, text: str, field: str, words: str
) -> None:
    path = write_csv(tmp_path, replace(row, text))
    error = load_error(path)
    message = str(error)
    assert str(path) in message
    assert f"row {row}" in message
    assert f"field '{field}'" in message
    assert words in message
    assert (error.row, error.field, error.count) == (row, field, 1)
    assert isinstance(error, ValueError)


def test_first_offending_row_and_count_are_reported(tmp_path: Path) -> None:
    rows = list(GOOD)
    rows[1] = "2024-01-01T00:01:00Z,100.5,102,100,101,-1"  # row 2: negative volume
    rows[3] = "2024-01-01T00:03:00Z,101.2,101.3,100.9,101,-4"  # row 4: negative volume
    error = load_error(write_csv(tmp_path, rows))
    assert error.row == 2
    assert error.count == 2
    assert "2 rows fail this check" in str(error)


def test_row_number_counts_data_rows_not_lines(tmp_path: Path) -> None:
    # Row 4 of the data is on line 5 of the file (line 1 is the header); messages use the row.
    error = load_error(write_csv(tmp_path, replace(4, "2024-01-01T00:03:00Z,101.2,101.3,100.9,,4")))
    assert error.row == 4
    assert "row 4 (2024-01-01T00:03:00+00:00)" in str(error)


def test_non_finite_check_comes_before_ohlc_checks(tmp_path: Path) -> None:
    # Row 2 has a NaN close; row 3 a bad low. NaN is checked first, whatever the row order.
    rows = list(GOOD)
    rows[1] = "2024-01-01T00:01:00Z,100.5,102,100,nan,2"
    rows[2] = "2024-01-01T00:02:00Z,101,101.5,101.1,101.2,3"
    error = load_error(write_csv(tmp_path, rows))
    assert (error.row, error.field) == (2, "close")


def _frame() -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=3, freq="1min", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": [1.0, 1.0, 1.0],
            "high": [2.0, 2.0, 2.0],
            "low": [0.5, 0.5, 0.5],
            "close": [1.5, 1.5, 1.5],
            "volume": [0.0, 0.0, 0.0],
        },
        index=index,
    )


def test_layout_wrong_column_order_is_rejected() -> None:
    frame = _frame()[["open", "low", "high", "close", "volume"]]
    with pytest.raises(DataError, match="columns must be exactly"):
        validate_bars(frame, source="mem")


def test_layout_missing_column_is_named() -> None:
    with pytest.raises(DataError, match=r"missing: \['volume'\]"):
        validate_bars(_frame().drop(columns="volume"), source="mem")


def test_layout_naive_index_is_rejected() -> None:
    frame = _frame()
    frame.index = frame.index.tz_localize(None)
    with pytest.raises(DataError, match="UTC DatetimeIndex"):
        validate_bars(frame, source="mem")


def test_layout_non_utc_index_is_rejected() -> None:
    frame = _frame()
    frame.index = frame.index.tz_convert("Europe/Berlin")
    with pytest.raises(DataError, match="tz=Europe/Berlin"):
        validate_bars(frame, source="mem")


def test_layout_index_name_and_dtype() -> None:
    frame = _frame()
    frame.index.name = "time"
    with pytest.raises(DataError, match="named 'timestamp'"):
        validate_bars(frame, source="mem")
    frame = _frame()
    frame["volume"] = frame["volume"].astype(np.float32)
    with pytest.raises(DataError, match="'volume' must be float64"):
        validate_bars(frame, source="mem")


def test_source_argument_and_attrs_name_the_data() -> None:
    frame = _frame()
    frame.iloc[1, 4] = -1.0
    with pytest.raises(DataError, match=r"^explicit: row 2"):
        validate_bars(frame, source="explicit")
    frame.attrs["source"] = "from-attrs"
    with pytest.raises(DataError, match=r"^from-attrs: row 2"):
        validate_bars(frame)


def minute_bars(minutes: list[int], closes: list[float] | None = None) -> pd.DataFrame:
    """Flat bars at the given minute offsets from 2024-01-01 00:00 UTC."""
    closes = closes or [100.0 + m for m in minutes]
    index = pd.DatetimeIndex(
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(minutes, unit="min"),
        name="timestamp",
    )
    price = np.asarray(closes, dtype=np.float64)
    return pd.DataFrame(
        {"open": price, "high": price, "low": price, "close": price, "volume": np.ones(len(price))},
        index=index,
    )


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_find_gaps_known_answer() -> None:
    # Present: 00:00 00:01 00:02 | 00:05 00:06 00:07 | 00:11 00:12.
    # Spacings 1,1,3,1,1,4,1 min: the median is 1 min.
    # Hole 1: 00:03, 00:04 missing (2 bars). Hole 2: 00:08, 00:09, 00:10 missing (3 bars).
    gaps = find_gaps(minute_bars([0, 1, 2, 5, 6, 7, 11, 12]))
    assert list(gaps.columns) == ["start", "end", "missing_bars"]
    assert gaps["start"].tolist() == [utc("2024-01-01 00:03"), utc("2024-01-01 00:08")]
    assert gaps["end"].tolist() == [utc("2024-01-01 00:04"), utc("2024-01-01 00:10")]
    assert gaps["missing_bars"].tolist() == [2, 3]


def test_find_gaps_with_explicit_freq_and_none_found() -> None:
    bars = minute_bars([0, 2, 4, 6])
    assert len(find_gaps(bars)) == 0  # median spacing is 2 min: nothing is missing
    # At 1-minute spacing, 00:01, 00:03 and 00:05 are each a one-bar hole.
    assert find_gaps(bars, freq="1m")["missing_bars"].tolist() == [1, 1, 1]


def test_keep_policy_returns_the_frame_untouched() -> None:
    bars = minute_bars([0, 1, 2, 5])
    assert apply_gap_policy(bars, "keep") is bars


def test_fill_policy_inserts_flat_zero_volume_bars() -> None:
    # Closes 10, 11, 12 at 00:00-00:02, 13 at 00:05 (median spacing 1 min):
    # 00:03 and 00:04 are filled with the previous close, 12.
    bars = minute_bars([0, 1, 2, 5], closes=[10.0, 11.0, 12.0, 13.0])
    bars.attrs = {"symbol": "X/Y", "source": "mem"}
    filled = apply_gap_policy(bars, "fill")
    assert filled.index.tolist() == [utc(f"2024-01-01 00:0{m}") for m in range(6)]
    assert filled["close"].tolist() == [10.0, 11.0, 12.0, 12.0, 12.0, 13.0]
    for column in ("open", "high", "low"):
        assert filled[column].iloc[3:5].tolist() == [12.0, 12.0]
    assert filled["volume"].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert filled.attrs == {"symbol": "X/Y", "source": "mem"}
    validate_bars(filled)
    assert len(find_gaps(filled)) == 0


def test_fill_policy_leaves_gaps_longer_than_max_fill_bars() -> None:
    # Hole of 2 bars (00:03-00:04) and of 3 bars (00:08-00:10); max_fill_bars=2 fills the first.
    bars = minute_bars([0, 1, 2, 5, 6, 7, 11, 12])
    filled = apply_gap_policy(bars, "fill", max_fill_bars=2)
    assert len(filled) == 8 + 2
    remaining = find_gaps(filled)
    assert remaining["missing_bars"].tolist() == [3]
    assert remaining["start"].tolist() == [utc("2024-01-01 00:08")]
    # max_fill_bars=3 fills both holes: 8 + 2 + 3 bars, none missing.
    assert len(apply_gap_policy(bars, "fill", max_fill_bars=3)) == 13


def test_fill_on_real_minute_data_bridges_short_holes_only() -> None:
    bars = load_dataset("coinbase_LTC-USD_1m")
    gaps = find_gaps(bars)
    short = gaps[gaps["missing_bars"] <= 60]
    long = gaps[gaps["missing_bars"] > 60]
    assert len(long) >= 1  # the file has a hole of several hours that must not be filled
    filled = load_bars("coinbase_LTC-USD_1m", gap_policy="fill")
    assert len(filled) == len(bars) + int(short["missing_bars"].sum())
    assert find_gaps(filled)["missing_bars"].tolist() == long["missing_bars"].tolist()
    validate_bars(filled)


def test_unknown_gap_policy_and_bad_max_fill_bars() -> None:
    bars = minute_bars([0, 1, 4])
    with pytest.raises(DataError, match=r"unknown gap policy 'drop'.*\['keep', 'fill'\]"):
        apply_gap_policy(bars, "drop")
    with pytest.raises(DataError, match="max_fill_bars"):
        apply_gap_policy(bars, "fill", max_fill_bars=-1)
