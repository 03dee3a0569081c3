"""Read OHLCV bars from CSV, Parquet or ccxt into the one bars representation, validated.

The bars frame every layer relies on: a tz-aware UTC DatetimeIndex named "timestamp" (the bar's open
time, in microseconds as pandas 3 parses by default), float64 columns exactly
open/high/low/close/volume, strictly increasing.
``frame.attrs["source"]`` names the file or dataset, ``frame.attrs["symbol"]`` the pair when known.

Loading is strict on purpose: unknown or misspelled columns, unparseable cells and inconsistent bars
are errors naming the file, the 1-based data row (CSV line = row + 1) and the field. Rows are never
sorted, dropped or repaired here, so a row number in an error is the row in the file.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.resample import COLUMNS, TIME_UNIT
from n1v1.data.validate import DEFAULT_MAX_FILL_BARS, apply_gap_policy, validate_bars

TIMESTAMP = "timestamp"
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")
# Epoch milliseconds of 1973-03-03: smaller integers are almost surely epoch *seconds*, a common
# mix-up that would otherwise silently put every bar in January 1970.
_MIN_EPOCH_MS = 100_000_000_000
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
    try:
        raw = pd.read_csv(handle, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: not a readable CSV file: {exc}", source=source) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(
            f"{source}: the file is empty; expected a header line "
            f"{','.join((TIMESTAMP, *COLUMNS))}",
            source=source,
        ) from exc
    return bars_from_table(raw, source=source, symbol=symbol)


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
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != 6:
            raise DataError(
                f"{source}: row {i + 1}: expected [timestamp_ms, open, high, low, close, volume], "
                f"got {row!r}",
                source=source,
                row=i + 1,
            )
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


def bars_from_table(raw: pd.DataFrame, *, source: str, symbol: str | None = None) -> pd.DataFrame:
    """Turn a raw table with a timestamp column and OHLCV columns into a validated bars frame."""
    raw = _normalise_columns(raw, source)
    index = _parse_timestamps(raw[TIMESTAMP], source)
    data = {c: _parse_numbers(raw[c], c, source) for c in COLUMNS}
    bars = pd.DataFrame(data, index=index, columns=list(COLUMNS))
    bars.attrs["source"] = source
    if symbol:
        bars.attrs["symbol"] = symbol
    return validate_bars(bars, source)


def _existing_file(path: str | Path) -> Path:
    file = Path(path)
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise DataError(f"{path}: {what}", source=str(path))
    return file


def _normalise_columns(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    expected = [TIMESTAMP, *COLUMNS]
    names = [str(c).strip().lower() for c in raw.columns]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(
            f"{source}: column '{duplicated[0]}' appears more than once",
            source=source,
            field=duplicated[0],
        )
    unknown = [n for n in names if n not in expected]
    missing = [n for n in expected if n not in names]
    if unknown or missing:
        problems = []
        for name in unknown:
            guess = difflib.get_close_matches(name, missing or expected, n=1)
            hint = f" (did you mean '{guess[0]}'?)" if guess else ""
            problems.append(f"unexpected column '{name}'{hint}")
        problems += [f"missing column '{name}'" for name in missing]
        raise DataError(
            f"{source}: {'; '.join(problems)}; expected exactly {','.join(expected)}",
            source=source,
            field=(unknown or missing)[0],
        )
    return raw.set_axis(names, axis=1)  # copy-on-write: renames without copying the columns


def _parse_timestamps(column: pd.Series, source: str) -> pd.DatetimeIndex:
    """UTC DatetimeIndex (ns) from datetimes, integer epoch ms or ISO-8601 strings."""
    values = column.reset_index(drop=True)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values.dt.tz_localize("UTC")
    elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    ):
        parsed = _parse_epoch_ms(values, source)
    else:
        missing = values.isna().to_numpy()
        if missing.any():
            _cell_error(source, int(np.argmax(missing)), TIMESTAMP, "timestamp is missing")
        text = values.astype(str).str.strip()
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            _cell_error(
                source,
                row,
                TIMESTAMP,
                f"cannot parse {text.iloc[row]!r} as an ISO-8601 time or epoch milliseconds",
            )
    return pd.DatetimeIndex(parsed, name=TIMESTAMP).as_unit(TIME_UNIT)


def _parse_epoch_ms(values: pd.Series, source: str) -> pd.Series:
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(numbers)
    if missing.any():
        _cell_error(source, int(np.argmax(missing)), TIMESTAMP, "timestamp is missing")
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row = int(np.argmax(bad))
        _cell_error(
            source, row, TIMESTAMP, f"{values.iloc[row]} is not an integer epoch-ms timestamp"
        )
    small = numbers < _MIN_EPOCH_MS
    if small.any():
        row = int(np.argmax(small))
        _cell_error(
            source,
            row,
            TIMESTAMP,
            f"{int(numbers[row])} is before 1973 as epoch milliseconds; integer timestamps must "
            "be epoch ms (epoch seconds? multiply by 1000)",
        )
    return pd.to_datetime(values.to_numpy(dtype=np.int64), unit="ms", utc=True).to_series(
        index=values.index
    )


def _parse_numbers(column: pd.Series, field: str, source: str) -> np.ndarray:
    """float64 values; a cell that is present but not a number is an error naming its row."""
    if pd.api.types.is_bool_dtype(column.dtype):
        raise DataError(f"{source}: column '{field}' holds booleans", source=source, field=field)
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    # A cell spelled "nan" is a number to float(); validation reports it as NaN with its row.
    spelled_nan = column.astype(str).str.strip().str.lower().eq("nan").to_numpy()
    unparsed = np.isnan(numbers) & column.notna().to_numpy() & ~spelled_nan
    if unparsed.any():
        row = int(np.argmax(unparsed))
        _cell_error(source, row, field, f"cannot parse {column.iloc[row]!r} as a number")
    return numbers


def _cell_error(source: str, row: int, field: str, problem: str) -> None:
    raise DataError(
        f"{source}: row {row + 1}, field '{field}': {problem}",
        source=source,
        row=row + 1,
        field=field,
    )
