"""From "a file or dataset name" to the bars a run uses: load, gap policy, resample, window.

The CLI, training and evaluation all start here, so every entry point sees the same bars.
"""

from __future__ import annotations

import pandas as pd

from n1v1.data.errors import DataError
from n1v1.data.loaders import load_bars
from n1v1.data.resample import resample_bars


def load_market(
    source: str,
    *,
    symbol: str | None = None,
    gap_policy: str = "keep",
    timeframe: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """Bars of `source` (a CSV/Parquet path or a bundled dataset name), gap policy applied,
    resampled to `timeframe`, cut to the UTC window [start, end] (both inclusive; a date alone
    covers its whole day)."""
    bars = load_bars(source, symbol, gap_policy=gap_policy)
    if timeframe:
        bars = resample_bars(bars, timeframe)
    for name, text in (("start", start), ("end", end)):
        if text is not None:
            try:
                pd.Timestamp(text)
            except ValueError:
                raise DataError(
                    f"{name}: cannot read {text!r} as a UTC time; use ISO-8601 such as "
                    "2018-04-04 or 2018-04-04T12:30",
                    field=name,
                ) from None
    if start is None and end is None:
        return bars
    attrs = dict(bars.attrs)
    window = bars.loc[start:end]
    if window.empty:
        first, last = (f"{t:%Y-%m-%d %H:%M}" for t in (bars.index[0], bars.index[-1]))
        raise DataError(
            f"{source}: no bars between {start or 'the start'} and {end or 'the end'}; the "
            f"data covers {first} to {last} UTC",
            source=source,
        )
    window = window.copy()
    window.attrs = attrs
    return window
