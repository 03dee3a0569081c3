"""Checks that a bars frame is usable, and what to do about missing bars (gaps).

Every rule here guards an assumption of the engine or the metrics: a duplicate timestamp would trade
the same bar twice, a low above the open would let a stop fill at a price that never traded, a NaN
would silently poison every indicator after it. So bad data is rejected, never repaired: the error
names the source, the first offending row (1-based data row: CSV line = row + 1) and field, and how
many rows fail the same check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.resample import COLUMNS, infer_timeframe, parse_timeframe, utc_index

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
GAP_POLICIES: tuple[str, ...] = ("keep", "fill")
DEFAULT_MAX_FILL_BARS = 60


def validate_bars(df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Raise `DataError` unless ``df`` is a valid bars frame; return ``df`` unchanged if it is.

    Checks, in this order (the first failing check is reported): the layout (UTC DatetimeIndex named
    "timestamp", float64 columns open/high/low/close/volume in that order), missing timestamps,
    NaN/infinite values, strictly increasing timestamps (no duplicates), prices > 0,
    low <= min(open, close), high >= max(open, close), volume >= 0.
    ``source`` names the data in messages; it defaults to ``df.attrs["source"]``.
    """
    name = source if source is not None else str(df.attrs.get("source", "<bars>"))
    _check_layout(df, name)
    if len(df.index) == 0:
        return df

    ts = df.index
    _report(df, name, "timestamp", np.asarray(ts.isna()), "timestamp is missing (NaT)")

    values = {c: df[c].to_numpy() for c in COLUMNS}
    nonfinite = np.column_stack([~np.isfinite(values[c]) for c in COLUMNS])
    if nonfinite.any():
        row, field, count = _first_bad(nonfinite, COLUMNS)
        kind = "NaN (missing or not a number)" if np.isnan(values[field][row]) else "infinite"
        _raise(df, name, row, field, f"value is {kind}", count)

    ns = ts.as_unit("ns").asi8
    not_increasing = np.r_[False, ns[1:] <= ns[:-1]]
    if not_increasing.any():
        row = int(np.argmax(not_increasing))
        relation = "duplicates" if ns[row] == ns[row - 1] else "is earlier than"
        _raise(
            df,
            name,
            row,
            "timestamp",
            f"{ts[row].isoformat()} {relation} row {row}'s {ts[row - 1].isoformat()} "
            "(timestamps must be strictly increasing)",
            int(not_increasing.sum()),
        )

    non_positive = np.column_stack([values[c] <= 0 for c in PRICE_COLUMNS])
    if non_positive.any():
        row, field, count = _first_bad(non_positive, PRICE_COLUMNS)
        _raise(df, name, row, field, f"price {_num(values[field][row])} is not > 0", count)

    body_low = np.minimum(values["open"], values["close"])
    low_above = values["low"] > body_low
    if low_above.any():
        row = int(np.argmax(low_above))
        _raise(
            df,
            name,
            row,
            "low",
            f"low {_num(values['low'][row])} is above min(open, close) = {_num(body_low[row])}",
            int(low_above.sum()),
        )

    body_high = np.maximum(values["open"], values["close"])
    high_below = values["high"] < body_high
    if high_below.any():
        row = int(np.argmax(high_below))
        _raise(
            df,
            name,
            row,
            "high",
            f"high {_num(values['high'][row])} is below max(open, close) = {_num(body_high[row])}",
            int(high_below.sum()),
        )

    _report(
        df,
        name,
        "volume",
        values["volume"] < 0,
        "volume {value!r} is negative",
        value_of=values["volume"],
    )
    return df


def find_gaps(df: pd.DataFrame, freq: str | pd.Timedelta | None = None) -> pd.DataFrame:
    """List the holes in ``df``: one row per run of missing bars.

    Columns: ``start`` (open time of the first missing bar), ``end`` (open time of the last missing
    bar), ``missing_bars`` (how many bar open times ``prev + k*freq`` lie strictly between the two
    present bars). ``freq`` defaults to the median spacing (`infer_timeframe`).
    """
    empty = pd.DataFrame(
        {
            "start": utc_index(np.array([], dtype=np.int64)).rename(None),
            "end": utc_index(np.array([], dtype=np.int64)).rename(None),
            "missing_bars": np.array([], dtype=np.int64),
        }
    )
    if len(df.index) < 2:
        return empty
    spacing = infer_timeframe(df) if freq is None else parse_timeframe(freq)
    prev_ns, counts = _gap_runs(df, spacing)
    if len(counts) == 0:
        return empty
    step = spacing.value
    return pd.DataFrame(
        {
            "start": utc_index(prev_ns + step, df.index.unit).rename(None),
            "end": utc_index(prev_ns + counts * step, df.index.unit).rename(None),
            "missing_bars": counts,
        }
    )


def apply_gap_policy(
    df: pd.DataFrame,
    policy: str = "keep",
    *,
    max_fill_bars: int = DEFAULT_MAX_FILL_BARS,
    freq: str | pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Handle missing bars: "keep" returns ``df`` as it is; "fill" inserts flat bars into gaps.

    A filled bar has open = high = low = close = the previous bar's close and volume 0: what a
    market with no trades shows. Gaps longer than ``max_fill_bars`` bars are left as they are, so
    the several non-adjacent days of a sample file are not bridged with days of invented bars.
    """
    if policy not in GAP_POLICIES:
        raise DataError(
            f"unknown gap policy {policy!r}; expected one of {list(GAP_POLICIES)}",
            field="gap_policy",
        )
    if not isinstance(max_fill_bars, int | np.integer) or max_fill_bars < 0:
        raise DataError(
            f"max_fill_bars must be an integer >= 0, got {max_fill_bars!r}", field="max_fill_bars"
        )
    if policy == "keep" or len(df.index) < 2:
        return df

    spacing = infer_timeframe(df) if freq is None else parse_timeframe(freq)
    prev_ns, counts = _gap_runs(df, spacing)
    fillable = counts <= max_fill_bars
    prev_ns, counts = prev_ns[fillable], counts[fillable]
    if len(counts) == 0:
        return df

    # Bar open times prev + k*step for k = 1..count of each gap, built without a Python loop.
    total = int(counts.sum())
    gap_of_bar = np.repeat(np.arange(len(counts)), counts)
    k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    new_ns = prev_ns[gap_of_bar] + k * spacing.value

    ns = df.index.as_unit("ns").asi8
    close = df["close"].to_numpy(dtype=np.float64)
    prev_close = close[np.searchsorted(ns, prev_ns)][gap_of_bar]
    filler = pd.DataFrame(
        {
            "open": prev_close,
            "high": prev_close,
            "low": prev_close,
            "close": prev_close,
            "volume": np.zeros(total),
        },
        index=utc_index(new_ns, df.index.unit),
    )
    out = pd.concat([df, filler]).sort_index(kind="stable")
    out.attrs = dict(df.attrs)
    return out


def _gap_runs(df: pd.DataFrame, spacing: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    """For each hole: the previous present bar's open time (ns) and the number of missing bars."""
    ns = df.index.as_unit("ns").asi8
    step = spacing.value
    diffs = np.diff(ns)
    # Missing bar open times are prev + k*step < next for k >= 1: ceil(diff / step) - 1 of them.
    counts = -(-diffs // step) - 1
    where = np.flatnonzero(counts > 0)
    return ns[where], counts[where].astype(np.int64)


def _num(value: float) -> str:
    """A value as the file spells it (100.8, not np.float64(100.8))."""
    return repr(float(value))


def _first_bad(bad: np.ndarray, columns: tuple[str, ...]) -> tuple[int, str, int]:
    """First offending row (0-based), its first offending column, and the count of bad rows."""
    bad_rows = bad.any(axis=1)
    row = int(np.argmax(bad_rows))
    return row, columns[int(np.argmax(bad[row]))], int(bad_rows.sum())


def _check_layout(df: pd.DataFrame, name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{name}: expected a pandas DataFrame, got {type(df).__name__}", source=name
        )
    if list(df.columns) != list(COLUMNS):
        missing = [c for c in COLUMNS if c not in df.columns]
        extra = [str(c) for c in df.columns if c not in COLUMNS]
        raise DataError(
            f"{name}: columns must be exactly {list(COLUMNS)} in that order; got "
            f"{[str(c) for c in df.columns]} (missing: {missing}, unexpected: {extra})",
            source=name,
            field=(missing or extra or [None])[0],
        )
    for c in COLUMNS:
        if df[c].dtype != np.float64:
            raise DataError(
                f"{name}: column '{c}' must be float64, got {df[c].dtype}", source=name, field=c
            )
    index = df.index
    if not isinstance(index, pd.DatetimeIndex) or str(index.tz) != "UTC":
        tz = getattr(index, "tz", None)
        raise DataError(
            f"{name}: the index must be a tz-aware UTC DatetimeIndex, got "
            f"{type(index).__name__} with tz={tz}",
            source=name,
            field="timestamp",
        )
    if index.name != "timestamp":
        raise DataError(
            f"{name}: the index must be named 'timestamp', got {index.name!r}",
            source=name,
            field="timestamp",
        )


def _report(
    df: pd.DataFrame,
    name: str,
    field: str,
    bad: np.ndarray,
    problem: str,
    value_of: np.ndarray | None = None,
) -> None:
    if bad.any():
        row = int(np.argmax(bad))
        text = problem.format(value=float(value_of[row])) if value_of is not None else problem
        _raise(df, name, row, field, text, int(bad.sum()))


def _raise(df: pd.DataFrame, name: str, pos: int, field: str, problem: str, count: int) -> None:
    ts = df.index[pos]
    when = "" if pd.isna(ts) else f" ({ts.isoformat()})"
    others = "" if count == 1 else f"; {count} rows fail this check"
    raise DataError(
        f"{name}: row {pos + 1}{when}, field '{field}': {problem}{others}",
        source=name,
        row=pos + 1,
        field=field,
        count=count,
    )
