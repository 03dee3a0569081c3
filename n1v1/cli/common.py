"""Pieces shared by the CLI's commands: exit codes and plain-text output formatting."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from n1v1.backtest.runner import BacktestResult
    from n1v1.config import Settings

EXIT_OK, EXIT_ERROR = 0, 2


def describe_run(bars: pd.DataFrame, settings: Settings) -> str:
    """Two lines: what data the run saw, and the cost and risk settings it used."""
    return f"{describe_bars('data', bars)}\n{cost_line(settings)}"


def cost_line(settings: Settings) -> str:
    ex, risk = settings.execution, settings.risk
    exits = [
        f"{label} {value:.2%}"
        for label, value in (
            ("stop-loss", risk.stop_loss_pct),
            ("take-profit", risk.take_profit_pct),
            ("trailing stop", risk.trailing_stop_pct),
        )
        if value is not None
    ]
    sizing = f"qty {risk.qty:g}" if risk.sizing == "fixed" else f"sizing {risk.sizing}"
    if risk.sizing == "fraction":
        sizing = f"{risk.fraction:.0%} of equity per position"
    return (
        f"cash {settings.backtest.cash:,.2f}; fill {ex.fill}; taker fee {ex.taker_fee:.3%}, maker "
        f"fee {ex.maker_fee:.3%}; slippage {ex.slippage_bps:g} bps; {sizing}"
        f"{'; shorts allowed' if risk.allow_short else ''}{'; ' if exits else ''}{', '.join(exits)}"
    )


def metrics_table(results: dict[str, BacktestResult]) -> str:
    """One row per metric (labels and units from METRICS), one column per result."""
    from n1v1.backtest.metrics import METRICS

    rows = [
        [info.label, *(format_metric(info.unit, r.metrics.get(key)) for r in results.values())]
        for key, info in METRICS.items()
    ]
    return render_table(["Metric", *results], rows, right=range(1, len(results) + 1))


def trades_summary(result: BacktestResult) -> str:
    closed = sum(1 for t in result.trades if t.exit_time is not None)
    still_open = len(result.trades) - closed
    lines = [
        f"{result.strategy}: {closed} closed trade{'s' if closed != 1 else ''}"
        + (f", {still_open} still open at the end (marked to the last close)" if still_open else "")
        + f"; engine: {result.engine}"
    ]
    lines += notes_lines(result.notes)
    if result.execution:
        from n1v1.execution.shortfall import execution_rows

        lines += ["", f"{result.strategy}: execution by parent orders (positive bps: a cost)"]
        lines += [f"  {label}: {value}" for label, value in execution_rows(result.execution)]
    if result.segments:
        lines += ["", f"{result.strategy}: gap-free segments (backtest.gaps=segment)"]
        lines.append(segments_table(result.segments))
        from n1v1.backtest.metrics import SHORT_SAMPLE_DAYS

        short = [s["segment"] for s in result.segments if _shorter(s, SHORT_SAMPLE_DAYS)]
        if short:
            lines += notes_lines(
                [
                    f"segment{'s' * (len(short) != 1)} {', '.join(map(str, short))} cover"
                    f"{'s' * (len(short) == 1)} less than {SHORT_SAMPLE_DAYS} days: their CAGR "
                    "and Calmar extrapolate that to a year; their return is what happened"
                ]
            )
    return "\n".join(lines)


def _shorter(segment: Mapping[str, Any], days: float) -> bool:
    elapsed = segment.get("elapsed_seconds")
    return isinstance(elapsed, int | float) and elapsed < days * 86_400


def strategies_summary(result: BacktestResult) -> str:
    """One line per strategy: its own P&L, from its shadow account (docs/execution.md)."""
    cash = result.settings.backtest.cash
    lines = ["Per strategy (each alone in a shadow account, same rules and prices):"]
    for name, entry in result.strategies.items():
        m = entry["metrics"]
        closed = m["n_trades"]
        lines.append(
            f"  {name}: net P&L {m['final_equity'] - cash:+,.2f} "
            f"({format_metric('fraction', m['total_return'])}), {closed} closed "
            f"trade{'s' if closed != 1 else ''}, fees {m['fees_paid']:,.2f}"
        )
    return "\n".join(lines)


def notes_lines(notes: Iterable[str], width: int = 100) -> list[str]:
    """Each note as 'note: ...', wrapped at `width` columns with continuation lines indented."""
    return [
        textwrap.fill(note, width, initial_indent="note: ", subsequent_indent="      ")
        for note in notes
    ]


def segments_table(segments: Sequence[Mapping[str, Any]]) -> str:
    """The per-segment figures of backtest.gaps=segment, one row per gap-free segment."""
    from n1v1.backtest.gaps import SEGMENT_KEYS
    from n1v1.backtest.metrics import METRICS

    rows = [
        [
            str(seg["segment"]),
            ts_label(_timestamp(seg["start"])),
            ts_label(_timestamp(seg["end"])),
            f"{seg['n_bars']:,}",
            *(format_metric(METRICS[key].unit, seg.get(key)) for key in SEGMENT_KEYS),
        ]
        for seg in segments
    ]
    short = {"elapsed_seconds": "time", "total_return": "return", "volatility": "volatility"}
    headers = ["#", "start", "end", "bars"]
    headers += [short.get(key, METRICS[key].label) for key in SEGMENT_KEYS]
    return render_table(headers, rows, right={0, *range(3, len(headers))})


def _timestamp(text: str) -> Any:
    import pandas as pd

    return pd.Timestamp(text)


def format_metric(unit: str, value: Any) -> str:
    """Percentages for fractions, currency to the cent, counts as integers; None -> 'n/a'."""
    if value is None:
        return "n/a"
    number = float(value)
    if unit == "fraction":
        pct = number * 100.0
        return f"{pct:.3e}%" if abs(pct) >= 1e7 else f"{pct:,.2f}%"
    if unit == "currency":
        return f"{number:,.2f}"
    if unit in ("count", "bars"):
        return f"{int(number):,}"
    if unit == "seconds":
        return format_duration(number)
    if unit == "number":
        return f"{number:,.2f}"
    return f"{number:.3e}" if abs(number) >= 1e7 else f"{number:,.3f}"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """A plain-text table; columns in `right` are right-aligned (numbers), the rest left."""
    right_cols = set(right)
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[Any]) -> str:
        out = [
            str(c).rjust(w) if i in right_cols else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def format_duration(seconds: float) -> str:
    total = round(seconds)
    if total == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])


def ts_label(stamp: Any) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M")


def describe_bars(name: str, bars: pd.DataFrame) -> str:
    from n1v1.data import infer_timeframe

    spacing = format_duration(infer_timeframe(bars).total_seconds()) if len(bars) > 1 else "?"
    return (
        f"{name}: {bars.attrs.get('symbol') or 'unknown symbol'}, {len(bars):,} bars of {spacing}, "
        f"{ts_label(bars.index[0])} to {ts_label(bars.index[-1])} UTC"
    )


def gap_report(bars: pd.DataFrame, largest: int = 5) -> str:
    """How many holes the bar spacing shows, how many bars they miss, and the largest ones."""
    from n1v1.data import find_gaps

    gaps = find_gaps(bars)
    if gaps.empty:
        return "Gaps: none"
    holes, missing = len(gaps), int(gaps["missing_bars"].sum())
    text = (
        f"Gaps: {holes:,} hole{'s' * (holes != 1)}, {missing:,} missing bar{'s' * (missing != 1)}"
    )
    if largest:
        top = gaps.sort_values("missing_bars", ascending=False).head(largest)
        rows = [
            [ts_label(g.start), ts_label(g.end), f"{int(g.missing_bars):,}"]
            for g in top.itertuples()
        ]
        text += f"; the largest:\n{render_table(['from', 'to', 'missing bars'], rows, right={2})}"
    return text


def bounds_label(spec: Any) -> str:
    if spec.choices:
        return " | ".join(map(str, spec.choices))
    if spec.low is None and spec.high is None:
        return "any"
    return f"[{spec.low}, {spec.high}]"
