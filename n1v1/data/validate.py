"""Checks that a bars frame is usable, and what to do about missing bars (gaps).

Every rule here guards an assumption of the engine or the metrics: a duplicate timestamp would trade
the same bar twice, a low above the open would let a stop fill at a price that never traded, a NaN
would silently poison every indicator after it. So bad data is rejected, never repaired: the error
lists every offending row (up to a limit) with its field and value, see `n1v1.data.problems`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.problems import RowCheck, Rows, raise_problems
from n1v1.data.resample import COLUMNS, infer_timeframe, parse_timeframe, utc_index

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
GAP_POLICIES: tuple[str, ...] = ("keep", "fill")
DEFAULT_MAX_FILL_BARS = 60


def validate_bars(df: pd.DataFrame, source: str | None = None) -> pd.DataFrame:
    """Raise `DataError` unless ``df`` is a valid bars frame; return ``df`` unchanged if it is.

    First the layout (UTC DatetimeIndex named "timestamp", float64 columns
    open/high/low/close/volume in that order); if that is right, every row is checked
    (`bar_checks`) and all problems are reported together, each naming the 0-based row index, the
    bar's time, the field and the value.
    ``source`` names the data in messages; it defaults to ``df.attrs["source"]``.
    """
    name = source if source is not None else str(df.attrs.get("source", "<bars>"))
    _check_layout(df, name)
    if len(df.index) == 0:
        return df
    checks = bar_checks(df.index, {c: df[c].to_numpy() for c in COLUMNS})
    raise_problems(name, checks, lambda: Rows(name, times=df.index))
    return df


def bar_checks(
    index: pd.DatetimeIndex,
    values: Mapping[str, np.ndarray],
    reported: Mapping[str, np.ndarray] | None = None,
) -> list[RowCheck]:
    """The row rules, in the order a row's problems are listed: a missing timestamp (NaT), a
    timestamp not after the previous one, NaN or infinite values, prices <= 0,
    low > min(open, close), high < max(open, close), volume < 0.

    ``reported`` marks cells a loader has already reported (a cell it could not parse is NaN or
    NaT here), so they are not reported twice; a row whose time is unknown is left out of the
    ordering rule, which compares each known time with the previous known one.
    """
    size = len(index)
    done = dict(reported or {})
    no_row = np.zeros(size, dtype=bool)
    ts_known = ~np.asarray(index.isna()) & ~done.get("timestamp", no_row)
    checks = [
        RowCheck(
            "timestamp",
            np.asarray(index.isna()) & ~done.get("timestamp", no_row),
            lambda i, rows: "timestamp is missing (NaT)",
        )
    ]
    known = np.flatnonzero(ts_known)
    ns = index.as_unit("ns").asi8
    previous = np.full(size, -1, dtype=np.int64)
    previous[known[1:]] = known[:-1]
    not_increasing = np.zeros(size, dtype=bool)
    not_increasing[known[1:]] = ns[known[1:]] <= ns[known[:-1]]

    def order_problem(i: int, rows: Rows) -> str:
        j = int(previous[i])
        relation = (
            f"duplicates {rows.ref(j)}'s time"
            if ns[i] == ns[j]
            else f"is earlier than {rows.ref(j)}'s {index[j].isoformat()}"
        )
        return f"{index[i].isoformat()} {relation} (timestamps must be strictly increasing)"

    checks.append(RowCheck("timestamp", not_increasing, order_problem))

    for c in COLUMNS:
        v = values[c]
        checks.append(
            RowCheck(
                c,
                ~np.isfinite(v) & ~done.get(c, no_row),
                lambda i, rows, v=v: (
                    "value is NaN (missing or not a number)"
                    if np.isnan(v[i])
                    else f"value is infinite ({v[i]})"
                ),
            )
        )

    for c in PRICE_COLUMNS:
        v = values[c]
        checks.append(RowCheck(c, v <= 0, lambda i, rows, v=v: f"price {_num(v[i])} is not > 0"))
    low, high, volume = values["low"], values["high"], values["volume"]
    body_low = np.minimum(values["open"], values["close"])
    body_high = np.maximum(values["open"], values["close"])
    checks += [
        RowCheck(
            "low",
            low > body_low,
            lambda i, rows: f"low {_num(low[i])} is above min(open, close) = {_num(body_low[i])}",
        ),
        RowCheck(
            "high",
            high < body_high,
            lambda i, rows: (
                f"high {_num(high[i])} is below max(open, close) = {_num(body_high[i])}"
            ),
        ),
        RowCheck("volume", volume < 0, lambda i, rows: f"volume {_num(volume[i])} is negative"),
    ]
    return checks


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
