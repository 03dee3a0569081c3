"""What a backtest says about the gaps in its bars: notes, per-segment metrics, trades across gaps.

A gap (`n1v1.data.gaps`) breaks the assumptions of the annualised metrics: the return of the bar
after it spans the whole hole, and bar counts stop being calendar time. `compute_metrics` withholds
the annualised metrics across gaps unless the policy is "allow" (docs/metrics.md, "Gaps"); this
module writes the notes that say so, computes the per-segment figures of the "segment" policy, and
flags the trades that were open across a gap (their `bars_held` is not their duration).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from n1v1.backtest.metrics import SampleTime, check_gap_policy, compute_metrics
from n1v1.data.gaps import Gap
from n1v1.domain import Side, Trade

__all__ = [
    "SEGMENT_KEYS",
    "gap_notes",
    "gap_summary",
    "segment_metrics",
    "trade_durations",
    "trade_gap_note",
]

# The figures reported for each gap-free segment under backtest.gaps=segment.
SEGMENT_KEYS = (
    "elapsed_seconds",
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
)
_SHOWN_GAPS = 3  # gaps named in a note; the JSON lists all of them


def gap_summary(gaps: Sequence[Gap], gap_multiple: float, *, subject: str = "the bars") -> str:
    """One sentence: how many gaps, and the largest ones (every gap is in the JSON)."""
    count = len(gaps)
    largest = sorted(gaps, key=lambda g: g.seconds, reverse=True)[:_SHOWN_GAPS]
    more = f", and {count - len(largest)} more" if count > len(largest) else ""
    return (
        f"{subject} have {count} gap{'s' * (count != 1)} longer than {gap_multiple:g}x the median "
        f"bar spacing ({'the largest: ' if count > 1 else ''}"
        f"{'; '.join(g.describe() for g in largest)}{more})"
    )


def gap_notes(
    gaps: Sequence[Gap], gap_policy: str, gap_multiple: float, *, subject: str = "the bars"
) -> list[str]:
    """Notes for a run over bars with these gaps: what they are and what the policy did."""
    check_gap_policy(gap_policy)
    if not gaps:
        return []
    count = len(gaps)
    plural = "s" * (count != 1)
    notes = [gap_summary(gaps, gap_multiple, subject=subject)]
    if gap_policy == "refuse":
        notes.append(
            "annualised metrics (CAGR, volatility, Sharpe, Sortino, Calmar) withheld: across a "
            "gap one bar's return spans the whole hole and bar counts are not calendar time "
            "(backtest.gaps=refuse). Use a gap-free window (--start/--end), or --set "
            "backtest.gaps=segment for figures per gap-free segment, or --set backtest.gaps=allow "
            "to annualise across the gaps"
        )
    elif gap_policy == "segment":
        notes.append(
            "annualised metrics withheld for the whole run (backtest.gaps=segment): each "
            "gap-free segment is reported on its own; a segment after a gap starts at its first "
            "bar's close, so the return across the gap belongs to no segment"
        )
    else:
        widest = max(g.missing_bars for g in gaps) + 1
        notes.append(
            f"WARNING: annualised across {count} gap{plural} (backtest.gaps=allow): CAGR compounds "
            "over the calendar time including the gaps, but volatility, Sharpe and Sortino count "
            f"each return across a gap as one bar's return although it spans up to {widest:,} "
            "bars; read them with care"
        )
    return notes


def segment_metrics(
    equity: pd.Series, initial_cash: float, clock: SampleTime, *, risk_free_rate: float = 0.0
) -> list[dict[str, Any]]:
    """The annualised figures of each gap-free segment of `equity` (split at `clock.gap_bars`).

    The first segment starts from `initial_cash`; a later one from the equity at the close of its
    first bar (the return into that bar spans the gap before it), so a one-bar segment after a gap
    has no return and its figures are None. Every segment uses the whole run's bars per year.
    """
    n = len(equity)
    bounds = [0, *clock.gap_bars.tolist(), n]
    rows = []
    for number, (first, stop) in enumerate(itertools.pairwise(bounds)):
        if number == 0:
            part, base = equity.iloc[first:stop], float(initial_cash)
        else:
            part, base = equity.iloc[first + 1 : stop], float(equity.iloc[first])
        row: dict[str, Any] = {
            "segment": number,
            "start": equity.index[first].isoformat(),
            "end": equity.index[stop - 1].isoformat(),
            "n_bars": stop - first,
        }
        row.update(dict.fromkeys(SEGMENT_KEYS))
        if len(part) and base > 0.0:
            metrics = compute_metrics(
                part,
                [],
                base,
                fills_notional=0.0,
                fees_paid=0.0,
                periods_per_year=clock.periods_per_year,
                risk_free_rate=risk_free_rate,
                gap_policy="allow",  # split at the run's gaps already
            )
            row.update({key: metrics[key] for key in SEGMENT_KEYS})
        rows.append(row)
    return rows


def trade_durations(
    trades: Sequence[Trade], index: pd.DatetimeIndex, gap_bars: np.ndarray
) -> tuple[list[float | None], list[bool]]:
    """Per trade: its calendar duration in seconds (exit − entry; None while still open) and
    whether a gap lies between its entry bar and its exit bar (or the last bar, when open)."""
    if not trades:
        return [], []
    ts = index.as_unit("ns").asi8
    entry = np.fromiter((t.entry_time.value for t in trades), dtype=np.int64, count=len(trades))
    is_open = np.fromiter((t.exit_time is None for t in trades), dtype=bool, count=len(trades))
    exit_ns = np.fromiter(
        (ts[-1] if t.exit_time is None else t.exit_time.value for t in trades),
        dtype=np.int64,
        count=len(trades),
    )
    after_gap = ts[gap_bars] if len(gap_bars) else np.empty(0, dtype=np.int64)
    # a gap lies inside the trade when the bar after it opens in (entry, exit]
    inside = np.searchsorted(after_gap, exit_ns, "right") - np.searchsorted(
        after_gap, entry, "right"
    )
    seconds = ((exit_ns - entry) / 1e9).tolist()
    durations = [None if still else s for s, still in zip(seconds, is_open.tolist(), strict=True)]
    return durations, (inside > 0).tolist()


def trade_gap_note(
    trades: Sequence[Trade], durations: Sequence[float | None], spans: Sequence[bool]
) -> list[str]:
    """A note naming the trades open across a gap (the largest by |pnl| first)."""
    across = [i for i, flag in enumerate(spans) if flag]
    if not across:
        return []
    across.sort(key=lambda i: abs(trades[i].pnl), reverse=True)
    shown = []
    for i in across[:_SHOWN_GAPS]:
        t = trades[i]
        side = "long" if t.side is Side.BUY else "short"
        end = f"{t.exit_time:%Y-%m-%d %H:%M}" if t.exit_time is not None else "still open"
        length = f" ({_days(durations[i])})" if durations[i] is not None else ""
        shown.append(
            f"{side} {t.symbol} {t.entry_time:%Y-%m-%d %H:%M} to {end}{length}, "
            f"{t.bars_held} bars, pnl {t.pnl:,.2f}"
        )
    count = len(across)
    return [
        f"{count} trade{'s' * (count != 1)} open across a gap: bars_held counts bars, not time "
        f"(duration_seconds in the JSON is calendar time); the largest: {'; '.join(shown)}"
    ]


def _days(seconds: float) -> str:
    days = seconds / 86_400
    return f"{days:,.1f} days" if days >= 1 else f"{seconds / 3_600:,.1f} hours"
