"""Read OHLCV bars from CSV, Parquet or ccxt into the one bars representation, validated.

The bars frame every layer relies on: a tz-aware UTC DatetimeIndex named "timestamp" (the bar's open
time, in microseconds as pandas 3 parses by default), float64 columns exactly
open/high/low/close/volume, strictly increasing.
``frame.attrs["source"]`` names the file or dataset, ``frame.attrs["symbol"]`` the pair when known.

Loading is strict on purpose: unknown or misspelled columns, unparseable cells and inconsistent
bars are errors, and nothing is half-loaded. One `DataError` lists every problem (up to
`n1v1.data.problems.MAX_REPORTED`), each naming the file, the line (CSV, as an editor numbers
it) or 0-based row index (Parquet, ccxt), the field and the value. Rows are never sorted,
dropped or repaired here.
"""

from __future__ import annotations

import difflib
import io
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
import pandas as pd

from n1v1.data.csv_text import CsvText
from n1v1.data.errors import DataError
from n1v1.data.problems import DataProblem, RowCheck, Rows, problem_error, raise_problems
from n1v1.data.resample import COLUMNS, TIME_UNIT
from n1v1.data.validate import DEFAULT_MAX_FILL_BARS, apply_gap_policy, bar_checks

TIMESTAMP = "timestamp"
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
# Epoch milliseconds of 1973-03-03: smaller integers are almost surely epoch *seconds*, a common
# mix-up that would otherwise silently put every bar in January 1970.
_MIN_EPOCH_MS = 100_000_000_000
# The last epoch millisecond a pandas timestamp can hold (2262-04-11): larger integers are almost
# surely epoch microseconds or nanoseconds.
_MAX_EPOCH_MS = 9_223_372_036_854
_NAME_RE = re.compile(r"^(?P<venue>[A-Za-z0-9]+)_(?P<base>[A-Za-z0-9]+)-(?P<quote>[A-Za-z0-9]+)_")


def load_csv(path: str | Path, symbol: str | None = None) -> pd.DataFrame:
    """Load and validate a CSV with header ``timestamp,open,high,low,close,volume``.

    Timestamps may be ISO-8601 strings (``Z``, an offset, or naive = UTC) or integer epoch ms.
    Header names are matched case-insensitively, ignoring surrounding spaces.
    """
    file = _existing_file(path)
    return read_csv_handle(file, source=str(path), symbol=symbol or symbol_from_name(file.stem))


def read_csv_handle(
    handle: str | Path | IO[bytes], *, source: str, symbol: str | None = None
) -> pd.DataFrame:
    """`load_csv` for an open file or resource (used for the bundled datasets)."""
    data = Path(handle).read_bytes() if isinstance(handle, str | Path) else handle.read()
    text = CsvText(source, data)
    try:
        raw = pd.read_csv(io.BytesIO(data), skipinitialspace=True)
    except pd.errors.ParserError as exc:
        if "EOF inside string" in str(exc):
            raise DataError(
                f'{source}:{text.last_record_line()}: a quote (") opened on this line is never '
                "closed, so the rest of the file reads as one cell",
                source=source,
            ) from None
        _raise_cell_counts(text, f"{source}: not a readable CSV file: {exc}")
    except UnicodeDecodeError:
        raise DataError(_not_utf8(source, data), source=source) from None
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{source}: the file is empty; expected a header line "
            f"{','.join((TIMESTAMP, *COLUMNS))}",
            source=source,
        ) from exc
    if not raw.index.equals(pd.RangeIndex(len(raw))):
        # A first data row with more cells than the header makes pandas read column 1 as an index
        # (a RangeIndex too, when those cells happen to be evenly spaced integers: epoch times).
        _raise_cell_counts(text, f"{source}: not a readable CSV file (rows longer than the header)")
    checks: list[RowCheck] = []
    if raw.isna().any().any():  # an empty cell, or a record with fewer cells than the header
        cell_counts = text.cell_count_check()
        if len(cell_counts.bad) == len(raw):
            checks.append(cell_counts)
    return bars_from_table(
        raw, source=source, symbol=symbol, rows=lambda: text.rows(len(raw)), checks=checks
    )


def load_parquet(path: str | Path, symbol: str | None = None) -> pd.DataFrame:
    """Load and validate a Parquet file with the same columns as the CSV format.

    The timestamp may be a column or the index (as written by ``bars.to_parquet``); it may be a
    datetime (naive = UTC), integer epoch ms or ISO-8601 strings.
    """
    file = _existing_file(path)
    source = str(path)
    try:
        raw = pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{source}: not a readable Parquet file: {exc}", source=source) from exc
    names = [str(c).strip().lower() for c in raw.columns]
    if TIMESTAMP not in names and str(raw.index.name).strip().lower() == TIMESTAMP:
        raw = raw.reset_index()
    return bars_from_table(raw, source=source, symbol=symbol or symbol_from_name(file.stem))


def from_ccxt(rows: list[list[Any]], symbol: str | None = None) -> pd.DataFrame:
    """Bars from ccxt's ``fetch_ohlcv`` rows ``[epoch_ms, open, high, low, close, volume]``.

    A ``None`` cell (some venues omit volume) becomes NaN, which validation rejects naming its row.
    """
    source = f"ccxt:{symbol}" if symbol else "ccxt"
    bad_shape = np.array([not isinstance(r, list | tuple) or len(r) != 6 for r in rows], dtype=bool)
    shape = RowCheck(
        None,
        bad_shape,
        lambda i, _: f"expected [timestamp_ms, open, high, low, close, volume], got {rows[i]!r}",
    )
    if len(rows):
        raise_problems(source, [shape], lambda: Rows(source))
    table = pd.DataFrame(list(rows), columns=[TIMESTAMP, *COLUMNS])
    return bars_from_table(table, source=source, symbol=symbol)


def load_bars(
    source: str | Path,
    symbol: str | None = None,
    gap_policy: str = "keep",
    *,
    max_fill_bars: int = DEFAULT_MAX_FILL_BARS,
) -> pd.DataFrame:
    """Load bars from a ``.csv``/``.parquet`` path or a bundled dataset name; apply a gap policy.

    A string that is neither an existing file nor a dataset name is an error listing the datasets.
    """
    from n1v1.data import datasets  # late import: datasets itself loads through this module

    path = Path(source)
    if path.suffix.lower() in FILE_SUFFIXES or path.exists():
        if path.suffix.lower() == ".csv":
            bars = load_csv(path, symbol)
        elif path.suffix.lower() in (".parquet", ".pq"):
            bars = load_parquet(path, symbol)
        else:
            raise DataError(
                f"{path}: unsupported file type {path.suffix!r}; expected one of "
                f"{list(FILE_SUFFIXES)}",
                source=str(path),
            )
    elif isinstance(source, str) and source in datasets.dataset_names():
        bars = datasets.load_dataset(source)
        if symbol:
            bars.attrs["symbol"] = symbol
    else:
        raise DataError(
            f"{source}: no such file, and not a bundled dataset; known datasets: "
            f"{', '.join(datasets.dataset_names())}",
            source=str(source),
        )
    return apply_gap_policy(bars, gap_policy, max_fill_bars=max_fill_bars)


def symbol_from_name(stem: str) -> str | None:
    """The pair in a bundled-style file name (coinbase_BTC-USD_1m -> BTC/USD), else None."""
    match = _NAME_RE.match(stem)
    return f"{match['base']}/{match['quote']}" if match else None


def bars_from_table(
    raw: pd.DataFrame,
    *,
    source: str,
    symbol: str | None = None,
    rows: Callable[[], Rows] | None = None,
    checks: Sequence[RowCheck] = (),
) -> pd.DataFrame:
    """Turn a raw table with a timestamp column and OHLCV columns into a validated bars frame.

    Every unparseable cell and every broken bar rule is collected before anything is raised, so
    one error lists them all. ``rows`` says how rows are named in messages (CSV lines); by default
    they are 0-based row indices with the bar's time. ``checks`` are the caller's own row checks
    (a CSV record's cell count); a row they flag has its empty cells left unreported.
    """
    naming = rows or (lambda: Rows(source))
    raw = _normalise_columns(raw, source, naming)
    index, timestamp_checks, timestamp_bad = _parse_timestamps(raw[TIMESTAMP])
    values: dict[str, np.ndarray] = {}
    reported: dict[str, np.ndarray] = {TIMESTAMP: timestamp_bad}
    number_checks = []
    for c in COLUMNS:
        values[c], check = _parse_numbers(raw[c], c, source)
        number_checks.append(check)
        reported[c] = check.bad
    for check in checks:  # e.g. a short CSV record: its missing cells are that one problem
        for field in (TIMESTAMP, *COLUMNS):
            reported[field] = reported[field] | check.bad
    all_checks = [
        *checks,
        *timestamp_checks,
        *number_checks,
        *bar_checks(index, values, reported),
    ]
    raise_problems(source, all_checks, rows or (lambda: Rows(source, times=index)))
    bars = pd.DataFrame(values, index=index, columns=list(COLUMNS))
    bars.attrs["source"] = source
    if symbol:
        bars.attrs["symbol"] = symbol
    return bars


def _raise_cell_counts(text: CsvText, fallback: str) -> NoReturn:
    """Raise one problem per record whose cell count differs from the header's."""
    check = text.cell_count_check()
    raise_problems(text.source, [check], lambda: text.rows(len(check.bad)))
    raise DataError(fallback, source=text.source)


def _not_utf8(source: str, data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"{source}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save it as UTF-8"
    return f"{source}: not UTF-8 text"


def _existing_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise DataError(f"{path}: {what}", source=str(path))
    return file


def _normalise_columns(raw: pd.DataFrame, source: str, rows: Callable[[], Rows]) -> pd.DataFrame:
    """Columns lower-cased and stripped; any missing, unknown or repeated one is an error (all of
    them listed, each on the header line for a CSV file)."""
    expected = [TIMESTAMP, *COLUMNS]
    names = [str(c).strip().lower() for c in raw.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    unknown = [n for n in names if n not in expected]
    missing = [n for n in expected if n not in names]
    if not (duplicated or unknown or missing):
        return raw.set_axis(names, axis=1)  # copy-on-write: renames without copying the columns
    problems: list[tuple[str, str]] = [
        (n, f"column '{n}' appears more than once") for n in duplicated
    ]
    for name in unknown:
        guess = difflib.get_close_matches(name, missing or expected, n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        problems.append((name, f"unexpected column '{name}'{hint}"))
    problems += [(name, f"missing column '{name}'") for name in missing]
    header = rows().place(None)
    expected_text = f"; expected exactly {','.join(expected)}"
    listed = [
        DataProblem(header, text + (expected_text if k == len(problems) - 1 else ""), field=field)
        for k, (field, text) in enumerate(problems)
    ]
    raise problem_error(source, listed, len(listed))


def _parse_timestamps(
    column: pd.Series,
) -> tuple[pd.DatetimeIndex, list[RowCheck], np.ndarray]:
    """UTC DatetimeIndex from datetimes, integer epoch ms or ISO-8601 strings, NaT where a cell is
    bad; the checks that word each bad cell; and the mask of cells they report."""
    values = column.reset_index(drop=True)
    checks: list[RowCheck] = []
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    ):
        parsed, checks = _parse_epoch_ms(values)
    else:
        missing = values.isna().to_numpy()
        text = values.astype(str).str.strip()
        if missing.any():  # "nan" would be reported as unparseable; an empty cell is missing
            text = text.where(~missing, "")
        # Text, because some cell is not a number: the integer cells are still epoch ms, as in a
        # numeric column (one bad cell must not turn every good epoch-ms row into a problem).
        integer = text.str.fullmatch(r"[+-]?\d+").to_numpy(dtype=bool)
        parsed = pd.to_datetime(
            text.where(~integer, ""), utc=True, format="ISO8601", errors="coerce"
        )
        unparsed = parsed.isna().to_numpy() & ~missing & ~integer
        checks = [
            RowCheck(TIMESTAMP, missing, lambda i, _: "timestamp is missing"),
            RowCheck(
                TIMESTAMP,
                unparsed,
                lambda i, _: (
                    f"cannot parse {text.iloc[i]!r} as an ISO-8601 time or epoch milliseconds"
                ),
            ),
        ]
        if integer.any():
            epoch, epoch_checks = _parse_epoch_ms(pd.to_numeric(text.where(integer, None)))
            parsed = parsed.where(~integer, epoch)
            checks += [RowCheck(c.field, c.bad & integer, c.describe) for c in epoch_checks]
    bad = np.zeros(len(values), dtype=bool)
    for check in checks:
        bad |= check.bad
    index = pd.DatetimeIndex(parsed, name=TIMESTAMP).as_unit(TIME_UNIT)
    return index, checks, bad


def _parse_epoch_ms(values: pd.Series) -> tuple[pd.Series, list[RowCheck]]:
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(numbers)
    with np.errstate(invalid="ignore"):
        not_integer = ~missing & (~np.isfinite(numbers) | (numbers != np.round(numbers)))
        usable = ~missing & ~not_integer
        small = usable & (numbers < _MIN_EPOCH_MS)
        large = usable & (numbers > _MAX_EPOCH_MS)
    good = usable & ~small & ~large
    ms = np.where(good, numbers, 0).astype(np.int64)
    parsed = pd.Series(pd.to_datetime(ms, unit="ms", utc=True), index=values.index)
    parsed[~good] = pd.NaT
    checks = [
        RowCheck(TIMESTAMP, missing, lambda i, _: "timestamp is missing"),
        RowCheck(
            TIMESTAMP,
            not_integer,
            lambda i, _: f"{values.iloc[i]} is not an integer epoch-ms timestamp",
        ),
        RowCheck(
            TIMESTAMP,
            small,
            lambda i, _: (
                f"{int(numbers[i])} is before 1973 as epoch milliseconds; integer timestamps must "
                "be epoch ms (epoch seconds? multiply by 1000)"
            ),
        ),
        RowCheck(
            TIMESTAMP,
            large,
            lambda i, _: (
                f"{int(numbers[i])} is after 2262 as epoch milliseconds; integer timestamps must "
                "be epoch ms (epoch microseconds? divide by 1000)"
            ),
        ),
    ]
    return parsed, checks


def _parse_numbers(column: pd.Series, field: str, source: str) -> tuple[np.ndarray, RowCheck]:
    """float64 values, NaN where a cell is empty or cannot be parsed; the check naming each cell
    that is present but not a number (empty cells are left to validation)."""
    if pd.api.types.is_bool_dtype(column.dtype):
        raise DataError(f"{source}: column '{field}' holds booleans", source=source, field=field)
    if pd.api.types.is_numeric_dtype(column.dtype):
        numbers = column.to_numpy(dtype=np.float64, na_value=np.nan)
        return numbers, RowCheck(field, np.zeros(len(numbers), dtype=bool), _never)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    # A cell spelled "nan" is a number to float(); validation reports it as NaN with its row.
    spelled_nan = column.astype(str).str.strip().str.lower().eq("nan").to_numpy()
    unparsed = np.isnan(numbers) & column.notna().to_numpy() & ~spelled_nan
    cells = column.reset_index(drop=True)
    return numbers, RowCheck(
        field, unparsed, lambda i, _: f"cannot parse {cells.iloc[i]!r} as a number"
    )


def _never(i: int, rows: Rows) -> str:
    raise AssertionError("a check with no bad row was asked to describe one")
