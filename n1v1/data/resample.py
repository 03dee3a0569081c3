"""Timeframes and OHLCV resampling (e.g. 1-minute bars to 1-hour bars).

Rules (see docs/data.md): buckets are aligned to the Unix epoch, so daily buckets start at UTC
midnight and hourly ones on the hour; a bucket is labelled by its open time; buckets with no source
bars are dropped (never invented); the trailing bucket is dropped when the data ends before it does,
because a half-built last bar would be read by a strategy as if it were final.

The aggregation works on the sorted int64 nanosecond index with ``np.*.reduceat``, which is both
simpler to reason about than ``DataFrame.resample`` (no label/closed/origin options to get
wrong) and fast on millions of bars.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from n1v1.data.errors import DataError

COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
# pandas 3 parses times to microseconds by default; loaders use the same unit so that frames built
# by hand (pd.date_range, pd.to_datetime) compare equal to loaded ones. Code that needs integers
# should ask for them explicitly: ``index.as_unit("ns").asi8``.
TIME_UNIT = "us"

_TIMEFRAME_RE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_timeframe(timeframe: str | pd.Timedelta) -> pd.Timedelta:
    """Turn "1m", "5m", "15m", "1h", "4h", "1d" (any positive ``<int><s|m|h|d>``) into a Timedelta.

    Only fixed-length units are accepted: weeks and months would need a calendar anchor that the
    epoch alignment used by `resample_bars` does not give (1970-01-01 was a Thursday).
    A positive ``pd.Timedelta`` is passed through.
    """
    if isinstance(timeframe, pd.Timedelta):
        if timeframe <= pd.Timedelta(0):
            raise DataError(f"timeframe must be positive, got {timeframe}", field="timeframe")
        return timeframe
    if not isinstance(timeframe, str):
        raise DataError(
            f"timeframe must be a string like '5m' or '1h', got {timeframe!r}", field="timeframe"
        )
    match = _TIMEFRAME_RE.match(timeframe)
    if match is None:
        raise DataError(
            f"bad timeframe {timeframe!r}: expected <positive integer><unit> with unit one of "
            "s (seconds), m (minutes), h (hours), d (days), e.g. '1m', '15m', '4h', '1d'",
            field="timeframe",
        )
    count = int(match.group(1))
    if count <= 0:
        raise DataError(f"bad timeframe {timeframe!r}: the count must be > 0", field="timeframe")
    return pd.Timedelta(seconds=count * _UNIT_SECONDS[match.group(2)])


def timeframe_label(spacing: pd.Timedelta) -> str:
    """`spacing` written as `parse_timeframe` reads it, in the largest unit that divides it
    ("1m", "4h", "1d", "90s"); a spacing below a second in nanoseconds ("250000000ns")."""
    ns = int(spacing.value)
    if ns <= 0 or ns % 1_000_000_000:
        return f"{ns}ns"
    seconds = ns // 1_000_000_000
    for unit in ("d", "h", "m", "s"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def infer_timeframe(df: pd.DataFrame) -> pd.Timedelta:
    """The bar spacing of ``df``: the median gap between consecutive timestamps.

    The median, not the minimum or the mode, so that real gaps (minutes without trades) and the odd
    irregular bar do not change the answer.
    """
    if len(df.index) < 2:
        raise DataError(
            f"{_source(df)}: cannot infer the timeframe from {len(df.index)} bar(s); "
            "need at least 2",
            source=_source(df),
        )
    ns = _index_ns(df)
    spacing = int(np.median(np.diff(ns)))
    if spacing <= 0:
        raise DataError(
            f"{_source(df)}: median spacing of the timestamps is {spacing} ns; the index must be "
            "sorted strictly increasing (run validate_bars for the offending row)",
            source=_source(df),
        )
    return pd.Timedelta(spacing, unit="ns")


def resample_bars(
    df: pd.DataFrame,
    timeframe: str | pd.Timedelta,
    *,
    source_timeframe: str | pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Aggregate bars into ``timeframe`` buckets: first open, max high, min low, last close,
    sum of volume.

    ``source_timeframe`` is the spacing of ``df`` (inferred with `infer_timeframe` when omitted); it
    decides whether the last bucket is complete: the last bucket is dropped when
    ``last source open time + source spacing < bucket end``. The first bucket is kept even when the
    data starts inside it. The target must be a whole multiple of the source spacing.
    """
    target = parse_timeframe(timeframe)
    source = _source(df)
    if list(df.columns) != list(COLUMNS):
        raise DataError(
            f"{source}: resample needs columns {list(COLUMNS)}, got {list(df.columns)}",
            source=source,
        )
    if not df.index.is_monotonic_increasing or not df.index.is_unique:
        raise DataError(
            f"{source}: timestamps must be strictly increasing to resample "
            "(run validate_bars to find the offending row)",
            source=source,
            field="timestamp",
        )
    if len(df.index) == 0:
        return df.copy()
    given = source_timeframe
    spacing = infer_timeframe(df) if given is None else parse_timeframe(given)
    if target < spacing or target % spacing != pd.Timedelta(0):
        raise DataError(
            f"{source}: cannot resample {_fmt(spacing)} bars to {_fmt(target)}: the target must be "
            "a whole multiple of the source timeframe (and not smaller)",
            source=source,
            field="timeframe",
        )

    ns = _index_ns(df)
    step = target.value
    bucket = np.floor_divide(ns, step)  # floor, also correct before 1970
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ns)] - 1

    # Drop the trailing bucket when its last expected source bar is missing: the data ends before
    # the bucket does, so a later bar could still change its high, low, close or volume.
    last_bucket_end = (int(bucket[-1]) + 1) * step
    if int(ns[-1]) + spacing.value < last_bucket_end:
        starts, ends = starts[:-1], ends[:-1]
    if len(starts) == 0:
        out = df.iloc[0:0].copy()
        out.attrs = dict(df.attrs)
        return out

    values = {c: df[c].to_numpy(dtype=np.float64) for c in COLUMNS}
    stop = ends[-1] + 1  # reduceat runs the last segment to the end of the array: cut it first
    out = pd.DataFrame(
        {
            "open": values["open"][starts],
            "high": np.maximum.reduceat(values["high"][:stop], starts),
            "low": np.minimum.reduceat(values["low"][:stop], starts),
            "close": values["close"][ends],
            "volume": np.add.reduceat(values["volume"][:stop], starts),
        },
        index=utc_index(bucket[starts] * step, df.index.unit),
    )
    out.attrs = dict(df.attrs)
    return out


def utc_index(ns: np.ndarray, unit: str = TIME_UNIT) -> pd.DatetimeIndex:
    """A tz-aware UTC DatetimeIndex named "timestamp", in ``unit``, from int64 epoch nanoseconds."""
    index = pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)
    return pd.DatetimeIndex(index, name="timestamp").as_unit(unit)


def _index_ns(df: pd.DataFrame) -> np.ndarray:
    index = df.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"{_source(df)}: the index must be a DatetimeIndex, got {type(index).__name__}",
            source=_source(df),
            field="timestamp",
        )
    return index.as_unit("ns").asi8


def _source(df: pd.DataFrame) -> str:
    return str(df.attrs.get("source", "<bars>"))


def _fmt(delta: pd.Timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if delta.value % 1_000_000_000 == 0 else str(delta)
