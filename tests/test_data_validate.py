"""validate_bars, find_gaps and apply_gap_policy: every rule names the file, line and field."""

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
    load_parquet,
    validate_bars,
)
from n1v1.data.problems import MAX_REPORTED

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
    """GOOD with data row ``row`` (1-based: on line row + 1 of the file) replaced by ``text``."""
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
        # Row 3 (line 4) repeats row 2's (line 3's) time.
        (3, "2024-01-01T00:01:00Z,101,101.5,100.5,101.2,3", "timestamp", "duplicates line 3's"),
        # Row 3 is earlier than row 2 (00:00:30 < 00:01).
        (3, "2024-01-01T00:00:30Z,101,101.5,100.5,101.2,3", "timestamp", "earlier than line 3's"),
        (2, "2024-01-01T00:01:00Z,100.5,102,100,,2", "close", "NaN"),
        (4, "2024-01-01T00:03:00Z,101.2,inf,100.9,101,4", "high", "value is infinite (inf)"),
        (3, "2024-01-01T00:02:00Z,101,101.5,-1,101.2,3", "low", "price -1.0 is not > 0"),
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
def test_each_rule_names_file_line_and_field(
    tmp_path: Path, row: int, text: str, field: str, words: str
) -> None:
    path = write_csv(tmp_path, replace(row, text))
    error = load_error(path)
    # Data row N is on line N + 1: line 1 is the header. One problem: one line.
    assert str(error).startswith(f"{path}:{row + 1}: field '{field}': ")
    assert words in str(error)
    assert "\n" not in str(error)
    assert (error.row, error.line, error.field, error.count) == (row, row + 1, field, 1)
    assert isinstance(error, ValueError)


def test_a_zero_open_also_breaks_the_low_rule_and_both_are_reported(tmp_path: Path) -> None:
    # open 0 is not > 0, and low 0 (which must be <= min(open, close) = 0) is not > 0 either.
    path = write_csv(tmp_path, replace(2, "2024-01-01T00:01:00Z,0,102,0,101,2"))
    assert str(load_error(path)).splitlines() == [
        f"{path}:3: field 'open': price 0.0 is not > 0",
        f"{path}:3: field 'low': price 0.0 is not > 0",
        f"{path}: 2 problems",
    ]


def test_every_offending_row_is_reported_with_the_count(tmp_path: Path) -> None:
    rows = list(GOOD)
    rows[1] = "2024-01-01T00:01:00Z,100.5,102,100,101,-1"  # row 2, line 3: negative volume
    rows[3] = "2024-01-01T00:03:00Z,101.2,101.3,100.9,101,-4"  # row 4, line 5: negative volume
    path = write_csv(tmp_path, rows)
    error = load_error(path)
    assert str(error).splitlines() == [
        f"{path}:3: field 'volume': volume -1.0 is negative",
        f"{path}:5: field 'volume': volume -4.0 is negative",
        f"{path}: 2 problems",
    ]
    assert (error.row, error.line, error.count) == (2, 3, 2)
    assert [(p.line, p.field) for p in error.problems] == [(3, "volume"), (5, "volume")]


def test_different_rules_are_all_reported_in_line_order(tmp_path: Path) -> None:
    # Row 2 (line 3) has a NaN close; row 3 (line 4) a low above its open and close.
    rows = list(GOOD)
    rows[1] = "2024-01-01T00:01:00Z,100.5,102,100,nan,2"
    rows[2] = "2024-01-01T00:02:00Z,101,101.5,101.3,101.2,3"
    path = write_csv(tmp_path, rows)
    assert str(load_error(path)).splitlines() == [
        f"{path}:3: field 'close': value is NaN (missing or not a number)",
        f"{path}:4: field 'low': low 101.3 is above min(open, close) = 101.0",
        f"{path}: 2 problems",
    ]


# -- every problem, named by the line an editor shows


def test_a_file_with_many_problems_lists_each_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_bytes(
        b"timestamp,open,high,low,close,volume\r\n"  # line 1 (CRLF line ends)
        b"2024-01-01T00:00:00Z,100,101,99,100.5,1\r\n"  # line 2: fine
        b"\r\n"  # line 3: blank, skipped by the parser but still a line
        b"2024-01-01T00:01:00Z,100.5,102,100,oops,2\r\n"  # line 4: close is not a number
        b"2024-01-01T00:01:00Z,101,101.5,100.5,101.2,3\r\n"  # line 5: repeats line 4's time
        b'"2024-01-01\r\nT00:03",101,101.5,100.5,101.2,3\r\n'  # lines 6-7: a quoted line break
        b"2024-01-01T00:04:00Z,101.2,101.3,101.5,101,-4\r\n"  # line 8: low above body, volume
        b"2024-01-01T00:05:00Z,1,2,0.5\r\n"  # line 9: two cells short
        b"2024-01-01T00:06:00Z,1,0.9,0.5,1,1\r\n"  # line 10: high below open
    )
    with pytest.raises(DataError) as info:
        load_bars(path)
    assert str(info.value).splitlines() == [
        f"{path}:4: field 'close': cannot parse 'oops' as a number",
        f"{path}:5: field 'timestamp': 2024-01-01T00:01:00+00:00 duplicates line 4's time "
        "(timestamps must be strictly increasing)",
        f"{path}:6: field 'timestamp': cannot parse '2024-01-01\\r\\nT00:03' as an ISO-8601 time "
        "or epoch milliseconds",
        f"{path}:8: field 'low': low 101.5 is above min(open, close) = 101.0",
        f"{path}:8: field 'volume': volume -4.0 is negative",
        f"{path}:9: has 4 cells but the header has 6",
        f"{path}:10: field 'high': high 0.9 is below max(open, close) = 1.0",
        f"{path}: 7 problems",
    ]
    error = info.value
    assert (error.line, error.row, error.field, error.count) == (4, 2, "close", 7)
    assert [p.line for p in error.problems] == [4, 5, 6, 8, 8, 9, 10]


def test_problems_are_listed_up_to_the_limit_then_counted(tmp_path: Path) -> None:
    # 30 bars, each with a negative volume: 30 problems, the first 20 listed (lines 2..21).
    rows = [f"2024-01-01T00:{m:02d}:00Z,100,101,99,100,-1" for m in range(30)]
    path = write_csv(tmp_path, rows)
    lines = str(load_error(path)).splitlines()
    assert len(lines) == MAX_REPORTED + 1 == 21
    assert lines[0] == f"{path}:2: field 'volume': volume -1.0 is negative"
    assert lines[19] == f"{path}:21: field 'volume': volume -1.0 is negative"
    assert lines[20] == f"{path}: ... and 10 more problems (30 in all)"


def test_rows_longer_than_the_header_are_all_named(tmp_path: Path) -> None:
    # A record with too many cells makes the columns untrustworthy, so those come first, alone.
    rows = list(GOOD)
    rows[0] += ",7"  # line 2: 7 cells
    rows[2] += ",8,9"  # line 4: 8 cells
    path = write_csv(tmp_path, rows)
    assert str(load_error(path)).splitlines() == [
        f"{path}:2: has 7 cells but the header has 6",
        f"{path}:4: has 8 cells but the header has 6",
        f"{path}: 2 problems",
    ]
    rows = list(GOOD)
    rows[1] += ",7"  # a later row this time (pandas reports it differently)
    path = write_csv(tmp_path, rows, "later.csv")
    assert str(load_error(path)) == f"{path}:3: has 7 cells but the header has 6"


def test_an_unclosed_quote_names_the_line_it_opens_on(tmp_path: Path) -> None:
    rows = list(GOOD)
    rows[1] = '"' + rows[1]  # line 3 opens a quote that nothing closes
    path = write_csv(tmp_path, rows)
    assert str(load_error(path)) == (
        f'{path}:3: a quote (") opened on this line is never closed, so the rest of the file reads '
        "as one cell"
    )


def test_column_problems_are_all_named_on_the_header_line(tmp_path: Path) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("\n\nTimestamp,open,hi,low,close\n2024-01-01,1,2,0.5,1.5\n")  # header: line 3
    assert str(load_error(path)).splitlines() == [
        f"{path}:3: unexpected column 'hi' (did you mean 'high'?)",
        f"{path}:3: missing column 'high'",
        f"{path}:3: missing column 'volume'; expected exactly timestamp,open,high,low,close,volume",
        f"{path}: 3 problems",
    ]


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        f"{HEADER}\n{GOOD[0]}\n2024-01-01T00:01:00Z,1,2,0.5,1.5,3 \xe9\n".encode("latin-1")
    )
    assert str(load_error(path)) == f"{path}:3: not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_parquet_problems_name_the_row_index(tmp_path: Path) -> None:
    bars = load_csv(write_csv(tmp_path, GOOD))
    bars.iloc[1, 2] = 101.5  # row index 1: low above min(open 100.5, close 101)
    bars.iloc[3, 3] = -2.0  # row index 3: a negative close, now below its low too
    path = tmp_path / "bars.parquet"
    bars.to_parquet(path)
    assert str(load_error_of(load_parquet, path)).splitlines() == [
        f"{path}: row index 1 (0-based, 2024-01-01T00:01:00+00:00): field 'low': low 101.5 is "
        "above min(open, close) = 100.5",
        f"{path}: row index 3 (0-based, 2024-01-01T00:03:00+00:00): field 'close': price -2.0 is "
        "not > 0",
        f"{path}: row index 3 (0-based, 2024-01-01T00:03:00+00:00): field 'low': low 100.9 is "
        "above min(open, close) = -2.0",
        f"{path}: 3 problems",
    ]


def load_error_of(loader, path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        loader(path)
    return info.value


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
    # a frame has no lines: its rows are named by 0-based index (df.iloc[1]) and time
    where = r"row index 1 \(0-based, 2024-01-01T00:01:00\+00:00\): field 'volume'"
    with pytest.raises(DataError, match=rf"^explicit: {where}"):
        validate_bars(frame, source="explicit")
    frame.attrs["source"] = "from-attrs"
    with pytest.raises(DataError, match=rf"^from-attrs: {where}"):
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
