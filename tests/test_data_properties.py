"""Property tests of the data boundary: any valid bars CSV loads exactly as written, and any
malformed row is an error naming that row's line and field, with nothing half-loaded.

Hypothesis writes a valid file (ISO-8601 or epoch-ms times, strictly increasing; prices with low
<= open, close <= high; volume >= 0), then breaks one row in one way: a number that is not one,
NaN, an infinity, an empty cell, a missing or an extra cell, a bad timestamp, a time equal to or
earlier than the previous row's, a negative volume, a price <= 0, a high below the low. The loader
must raise `DataError` listing a problem on that line (and field), leave the file and the bundled
dataset cache as they were, and load the repaired file exactly as the valid one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from n1v1.data import DataError, from_ccxt, load_csv, load_dataset
from n1v1.data import datasets as bundled

HEADER = "timestamp,open,high,low,close,volume"
START_MS = 1_514_764_800_000  # 2018-01-01 UTC
PROPERTY = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@dataclass(frozen=True)
class Bars:
    times_ms: list[int]
    rows: list[tuple[float, float, float, float, float]]  # open, high, low, close, volume
    iso: bool  # timestamps written as ISO-8601 (else epoch ms)

    def time_cell(self, ms: int) -> str:
        if not self.iso:
            return str(ms)
        return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def lines(self) -> list[list[str]]:
        return [
            [self.time_cell(ms), *(repr(v) for v in row)]
            for ms, row in zip(self.times_ms, self.rows, strict=True)
        ]


positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False)


@st.composite
def bar_rows(draw: st.DrawFn) -> tuple[float, float, float, float, float]:
    open_, close = draw(positive), draw(positive)
    low = draw(st.floats(min_value=1e-7, max_value=min(open_, close)))
    high = draw(st.floats(min_value=max(open_, close), max_value=2e9))
    volume = draw(st.floats(min_value=0, max_value=1e12))
    return open_, high, low, close, volume


@st.composite
def valid_bars(draw: st.DrawFn) -> Bars:
    n = draw(st.integers(2, 12))
    steps = draw(st.lists(st.integers(1, 86_400_000), min_size=n, max_size=n))
    times = list(np.cumsum([START_MS - steps[0], *steps[1:]]) + steps[0])
    return Bars(
        [int(t) for t in times],
        draw(st.lists(bar_rows(), min_size=n, max_size=n)),
        draw(st.booleans()),
    )


def write(path: Path, cells: list[list[str]]) -> Path:
    path.write_text("\n".join([HEADER, *(",".join(row) for row in cells)]) + "\n")
    return path


def expected_frame(bars: Bars) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(bars.times_ms, unit="ms", utc=True), name="timestamp")
    columns = list(zip(*bars.rows, strict=True))
    names = ["open", "high", "low", "close", "volume"]
    return pd.DataFrame(
        {name: np.asarray(col, dtype=np.float64) for name, col in zip(names, columns, strict=True)},
        index=index.as_unit("us"),
    )


@PROPERTY
@given(valid_bars())
def test_a_valid_file_loads_exactly_as_written(
    tmp_path_factory: pytest.TempPathFactory, bars: Bars
) -> None:
    path = write(tmp_path_factory.mktemp("csv") / "bars.csv", bars.lines())
    loaded = load_csv(path)
    pd.testing.assert_frame_equal(loaded, expected_frame(bars), check_exact=True, check_freq=False)


FIELDS = ["open", "high", "low", "close", "volume"]
# How a row is broken, and the field its problem must name (None: the record as a whole).
BREAKS = {
    "not_a_number": "value",
    "nan": "value",
    "infinite": "value",
    "empty_cell": "value",
    "missing_cell": None,
    "extra_cell": None,
    "bad_timestamp": "timestamp",
    "duplicate_time": "timestamp",
    "earlier_time": "timestamp",
    "negative_volume": "volume",
    "price_not_positive": "value",
    "high_below_low": "high",
    "blank_cell": "value",
    "quoted_comma": "value",
    "no_cells": "timestamp",  # the right number of cells, every one empty
    "timestamp_with_junk": "timestamp",
    "unicode_digits": "value",
}


@st.composite
def broken_files(draw: st.DrawFn) -> tuple[Bars, list[list[str]], int, str | None, str]:
    bars = draw(valid_bars())
    cells = bars.lines()
    kind = draw(st.sampled_from(sorted(BREAKS)))
    first = 1 if kind in ("duplicate_time", "earlier_time") else 0
    row = draw(st.integers(first, len(cells) - 1))
    field = BREAKS[kind]
    column = draw(st.sampled_from(FIELDS))
    if kind == "price_not_positive":
        column = draw(st.sampled_from(FIELDS[:4]))
    at = 1 + FIELDS.index(column)
    if field == "value":
        field = column
    if kind == "not_a_number":
        cells[row][at] = draw(
            st.text(alphabet="abcxyz-+,.;:!?/ ", min_size=1, max_size=6).filter(
                lambda t: t.strip() and "," not in t and _not_float(t)
            )
        )
    elif kind == "nan":
        cells[row][at] = draw(st.sampled_from(["nan", "NaN", "NAN"]))
    elif kind == "infinite":
        cells[row][at] = draw(st.sampled_from(["inf", "-inf", "Infinity", "1e999"]))
    elif kind == "empty_cell":
        cells[row][at] = ""
    elif kind == "missing_cell":
        del cells[row][draw(st.integers(0, 5))]
    elif kind == "extra_cell":
        cells[row].insert(draw(st.integers(0, 6)), draw(st.sampled_from(["1", "x", "0.5"])))
    elif kind == "bad_timestamp":
        cells[row][0] = draw(
            st.sampled_from(
                ["2018-13-01T00:00:00Z", "yesterday", "2018-02-30", "12:00", "0x1F", "1.5", "-"]
            )
        )
    elif kind == "duplicate_time":
        cells[row][0] = cells[row - 1][0]
    elif kind == "earlier_time":
        earlier = bars.times_ms[row - 1] - draw(st.integers(1, 86_400_000))
        cells[row][0] = bars.time_cell(earlier)
    elif kind == "negative_volume":
        cells[row][5] = repr(-draw(st.floats(min_value=1e-9, max_value=1e9)))
    elif kind == "price_not_positive":
        cells[row][at] = repr(-draw(st.floats(min_value=0, max_value=1e9)))
    elif kind == "blank_cell":
        cells[row][at] = draw(st.sampled_from([" ", "   ", "\t"]))
    elif kind == "quoted_comma":
        cells[row][at] = '"1,5"'
    elif kind == "no_cells":
        cells[row] = [""] * 6
    elif kind == "timestamp_with_junk":
        cells[row][0] = bars.time_cell(bars.times_ms[row]) + draw(
            st.sampled_from(["x", " UTC?", "Z!"])
        )
    elif kind == "unicode_digits":
        cells[row][at] = draw(st.sampled_from(["\uff11\uff12", "\u0661", "1\u00a02"]))
    elif kind == "high_below_low":
        low = bars.rows[row][2]
        cells[row][2] = repr(low / draw(st.floats(min_value=1.5, max_value=1e6)))
    return bars, cells, row, field, kind


def _not_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


@PROPERTY
@given(broken_files())
def test_a_broken_row_is_an_error_naming_its_line_and_field_and_nothing_is_half_loaded(
    tmp_path_factory: pytest.TempPathFactory,
    broken: tuple[Bars, list[list[str]], int, str | None, str],
) -> None:
    bars, cells, row, field, kind = broken
    folder = tmp_path_factory.mktemp("csv")
    path = write(folder / "bars.csv", cells)
    written = path.read_bytes()
    cache_before = bundled._load_cached.cache_info()
    line = row + 2  # the header is line 1

    with pytest.raises(DataError) as raised:
        load_csv(path)
    error = raised.value
    located = [(p.line, p.field) for p in error.problems]
    assert (line, field) in located, (kind, str(error))
    assert {p.line for p in error.problems} == {line}, (kind, str(error))  # that row alone
    assert f"{path}:{line}:" in str(error)
    assert error.source == str(path) and error.count is not None and error.count >= 1

    # Nothing half-loaded or remembered: the file is untouched, no bundled dataset was cached
    # by the failed load, and the same file with the row repaired loads as the valid one.
    assert path.read_bytes() == written
    assert bundled._load_cached.cache_info().currsize == cache_before.currsize
    repaired = write(folder / "repaired.csv", bars.lines())
    pd.testing.assert_frame_equal(
        load_csv(repaired), expected_frame(bars), check_exact=True, check_freq=False
    )


def test_a_failed_load_leaves_the_bundled_datasets_as_they_were(tmp_path: Path) -> None:
    name = "coinbase_LTC-USD_1m"
    before = load_dataset(name)
    broken = write(tmp_path / "coinbase_LTC-USD_1m.csv", [["2018-01-01", "1", "x", "1", "1", "1"]])
    with pytest.raises(DataError):
        load_csv(broken)
    pd.testing.assert_frame_equal(load_dataset(name), before, check_exact=True)


@PROPERTY
@given(
    valid_bars(),
    st.data(),
)
def test_a_broken_ccxt_row_is_an_error_naming_its_row(bars: Bars, data: st.DataObject) -> None:
    rows: list[list[object]] = [
        [ms, *row] for ms, row in zip(bars.times_ms, bars.rows, strict=True)
    ]
    assert len(from_ccxt([list(r) for r in rows], "BTC/USD")) == len(rows)
    row = data.draw(st.integers(0, len(rows) - 1))
    column = data.draw(st.integers(1, 5))
    rows[row][column] = data.draw(st.sampled_from([None, math.nan, math.inf, -1.0]))
    with pytest.raises(DataError) as raised:
        from_ccxt(rows, "BTC/USD")
    assert row in [p.position for p in raised.value.problems], str(raised.value)
    assert f"row index {row} (0-based" in str(raised.value)


def test_one_bad_time_in_an_epoch_ms_file_is_named_alone(tmp_path: Path) -> None:
    """Found by the property above: one cell that is not a number made pandas read the column
    as text, and every good epoch-ms row was then reported as an unreadable time."""
    path = write(
        tmp_path / "bars.csv",
        [
            ["1514764800000", "1", "1", "1", "1", "1"],
            ["yesterday", "1", "1", "1", "1", "1"],
            ["1514764920000", "1", "1", "1", "1", "1"],
        ],
    )
    with pytest.raises(DataError) as raised:
        load_csv(path)
    assert str(raised.value) == (
        f"{path}:3: field 'timestamp': cannot parse 'yesterday' as an ISO-8601 time or epoch "
        "milliseconds"
    )


def test_a_first_row_with_an_extra_cell_is_named_alone(tmp_path: Path) -> None:
    """Found by the property above: pandas takes the first column as the index when the first
    row is longer than the header, and evenly spaced epoch times made that index look like the
    default one, so the shifted columns were reported as problems of every row."""
    path = write(
        tmp_path / "bars.csv",
        [
            ["1514764800000", "1", "1", "1", "1", "1", "7"],
            ["1514764860000", "1", "1", "1", "1", "1"],
            ["1514764920000", "1", "1", "1", "1", "1"],
        ],
    )
    with pytest.raises(DataError) as raised:
        load_csv(path)
    assert str(raised.value) == f"{path}:2: has 7 cells but the header has 6"
