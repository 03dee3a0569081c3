"""Long gaps in the bars: holes far larger than the usual bar spacing.

Exchanges skip bars with no trades, so a few missing minutes in minute data are normal and harmless
(`find_gaps` lists every missing bar). A hole of days or months is different: the bar after it
carries the whole price move of the hole as if it were one bar's return, and a backtest "holds" a
position through a period nobody observed. The metrics (docs/metrics.md, "Gaps") therefore treat a
spacing above ``multiple`` times the median spacing as a *gap*, and every backtest, sweep,
walk-forward and evaluation reports the gaps it saw. This module only finds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

# A spacing above this multiple of the median bar spacing is a gap. Why 10: a hole of m bars folds
# m bars of variance into one return, so each hole adds about (m - 1) / n to the variance estimate;
# holes of up to 9 missing bars are routine in minute crypto data (the bundled 2018 Coinbase files
# have about a hundred, most of 1 to 3 minutes) and move the volatility by a fraction of a percent,
# while the holes that break annualisation (hours in minute data, weeks in daily data, the months
# between the bundled files' stretches) are tens to hundreds of thousands of bars.
DEFAULT_GAP_MULTIPLE = 10.0
_NS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Gap:
    """One long hole: the bars around it and what is missing in between.

    ``start`` and ``end`` follow `find_gaps`: the open times of the first and last missing bar
    (``before + spacing`` and ``before + missing_bars * spacing``).
    """

    bar: int  # position of the first bar after the hole
    before: pd.Timestamp  # open time of the last bar before the hole
    after: pd.Timestamp  # open time of the first bar after the hole
    start: pd.Timestamp
    end: pd.Timestamp
    missing_bars: int
    seconds: float  # time without bars: after - before - one spacing

    def to_dict(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "missing_bars": self.missing_bars,
            "seconds": self.seconds,
            "last_bar_before": self.before.isoformat(),
            "first_bar_after": self.after.isoformat(),
        }

    def describe(self) -> str:
        """'2016-10-10 00:00 to 2017-09-02 23:59 UTC (472,320 missing bars, 328d)'."""
        return (
            f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC "
            f"({self.missing_bars:,} missing bar{'s' * (self.missing_bars != 1)}, "
            f"{_duration(self.seconds)})"
        )


def check_gap_multiple(multiple: float) -> float:
    """The multiple as a float, or a ValueError naming the field: it must be finite and > 1."""
    if isinstance(multiple, bool) or not isinstance(multiple, int | float | np.number):
        raise TypeError(f"gap_multiple must be a number, got {type(multiple).__name__}")
    if not (math.isfinite(multiple) and multiple > 1.0):
        raise ValueError(
            f"gap_multiple must be finite and > 1 (a multiple of the median bar spacing), "
            f"got {multiple}"
        )
    return float(multiple)


def gap_positions(ts_ns: np.ndarray, spacing_ns: float | None, multiple: float) -> np.ndarray:
    """Positions i >= 1 whose bar opens more than ``multiple * spacing`` after bar i - 1.

    ``ts_ns`` are strictly increasing int64 nanoseconds; ``spacing_ns`` the median spacing (None
    for fewer than two bars: no gaps).
    """
    if spacing_ns is None or len(ts_ns) < 2:
        return np.empty(0, dtype=np.int64)
    steps = np.diff(ts_ns)
    return np.flatnonzero(steps > multiple * spacing_ns).astype(np.int64) + 1


def long_gaps(
    index: pd.DatetimeIndex,
    multiple: float = DEFAULT_GAP_MULTIPLE,
    *,
    spacing: pd.Timedelta | None = None,
) -> list[Gap]:
    """The gaps of ``index``: spacings above ``multiple`` x ``spacing`` (default: the median
    spacing of ``index`` itself), in time order."""
    multiple = check_gap_multiple(multiple)
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(f"index must be a DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        return []
    ts = index.as_unit("ns").asi8
    step = float(np.median(np.diff(ts))) if spacing is None else float(spacing.value)
    positions = gap_positions(ts, step, multiple)
    return gaps_at(index, positions, step)


def gaps_at(index: pd.DatetimeIndex, positions: np.ndarray, spacing_ns: float) -> list[Gap]:
    """`Gap` records for known positions (bars that follow a gap) of ``index``."""
    if len(positions) == 0:
        return []
    ts = index.as_unit("ns").asi8
    unit = index.unit
    out = []
    for i in positions.tolist():
        before, after = int(ts[i - 1]), int(ts[i])
        missing = -(-(after - before) // int(spacing_ns)) - 1  # ceil(diff / spacing) - 1
        out.append(
            Gap(
                bar=i,
                before=index[i - 1],
                after=index[i],
                start=_stamp(before + spacing_ns, index.tz, unit),
                end=_stamp(before + missing * spacing_ns, index.tz, unit),
                missing_bars=int(missing),
                seconds=(after - before - spacing_ns) / _NS_PER_SECOND,
            )
        )
    return out


def _stamp(ns: float, tz: object, unit: str) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz=tz).as_unit(unit)


def _duration(seconds: float) -> str:
    total = round(seconds)
    parts = []
    for name, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{name}")
    return " ".join(parts[:2]) or "0s"
