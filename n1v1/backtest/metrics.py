"""Performance statistics of a backtest: returns, risk, drawdown and trade statistics.

Every formula is written down in docs/metrics.md (so a quant can recompute any number by hand)
and pinned by hand-computed known answers in tests/test_metrics.py. The functions are vectorised
NumPy: a 10-million-bar equity curve is summarised in a fraction of a second, so sweeps can afford
to call `compute_metrics` for every parameter set.

Undefined values (the Sharpe ratio of a flat curve, a profit factor without losing trades, ...)
are `None`, never NaN or inf, so the result serialises to strict JSON and a reader never mistakes
"undefined" for a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from n1v1.data.gaps import DEFAULT_GAP_MULTIPLE, check_gap_multiple, gap_positions
from n1v1.domain import Trade

SECONDS_PER_YEAR = 365 * 86_400  # crypto trades every day: annualise over a 365-day year
# Below this much calendar time a result carries a note that its CAGR and Calmar extrapolate a
# short sample to a year (0.8 % in three days compounds to 163 % a year): see short_sample_note.
SHORT_SAMPLE_DAYS = 30
_NS_PER_SECOND = 1_000_000_000

# What to do with the annualised metrics when the bars have gaps (docs/metrics.md, "Gaps"):
# refuse: null them (and say why); segment: null them and report each gap-free stretch on its own
# (n1v1.backtest.gaps.segment_metrics); allow: annualise across the gaps anyway.
GAP_POLICIES = ("refuse", "segment", "allow")
ANNUALISED = ("cagr", "volatility", "sharpe", "sortino", "calmar")

MetricValue = float | int | None


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """How to label, format and explain one metric; the HTML report renders tooltips from it."""

    label: str
    unit: str  # "fraction" | "ratio" | "currency" | "count" | "bars" | "seconds" | "number"
    formula: str


# One entry per key returned by `compute_metrics`, in the order they are returned. The formulas
# are the short form of docs/metrics.md (r = per-bar return, rf = per-bar risk-free rate, ppy =
# bars per year).
METRICS: dict[str, MetricInfo] = {
    "n_bars": MetricInfo("Bars", "count", "number of bars in the equity curve"),
    "periods_per_year": MetricInfo(
        "Bars per year", "number", "ppy = 365·86400 / median bar spacing in seconds (or given)"
    ),
    "elapsed_seconds": MetricInfo(
        "Calendar time",
        "seconds",
        "last bar's open − first bar's open + one bar spacing; years = this / (365·86400)",
    ),
    "n_gaps": MetricInfo(
        "Gaps", "count", "bar spacings > gap_multiple × the median spacing (see notes)"
    ),
    "initial_cash": MetricInfo("Initial cash", "currency", "E₋₁, the equity before the first bar"),
    "final_equity": MetricInfo(
        "Final equity", "currency", "E_last, equity at the last bar's close"
    ),
    "total_return": MetricInfo("Total return", "fraction", "E_last / initial_cash − 1"),
    "cagr": MetricInfo(
        "CAGR",
        "fraction",
        "(E_last / initial_cash)^(1/years) − 1, years in calendar time",
    ),
    "volatility": MetricInfo("Volatility (ann.)", "fraction", "std(r, ddof=1) · √ppy"),
    "sharpe": MetricInfo("Sharpe", "ratio", "mean(r − rf) / std(r − rf, ddof=1) · √ppy"),
    "sortino": MetricInfo(
        "Sortino", "ratio", "mean(r − rf) / √(Σ min(r − rf, 0)² / (n − 1)) · √ppy, over all bars"
    ),
    "max_drawdown": MetricInfo(
        "Max drawdown", "fraction", "max over t of 1 − E_t / max(initial_cash, E_0..E_t)"
    ),
    "max_drawdown_duration": MetricInfo(
        "Longest drawdown", "bars", "most consecutive bars closing below the running peak"
    ),
    "max_drawdown_duration_seconds": MetricInfo(
        "Longest drawdown (time)",
        "seconds",
        "time from the first underwater bar to the bar that regains the peak (or data end)",
    ),
    "calmar": MetricInfo("Calmar", "ratio", "cagr / max_drawdown"),
    "n_trades": MetricInfo("Closed trades", "count", "trades with an exit time"),
    "win_rate": MetricInfo("Win rate", "fraction", "closed trades with pnl > 0 / closed trades"),
    "profit_factor": MetricInfo(
        "Profit factor", "ratio", "Σ pnl of winners / |Σ pnl of losers|; null without losers"
    ),
    "expectancy": MetricInfo("Expectancy", "currency", "mean pnl per closed trade (net of fees)"),
    "avg_win": MetricInfo("Average win", "currency", "mean pnl of trades with pnl > 0"),
    "avg_loss": MetricInfo("Average loss", "currency", "mean pnl of trades with pnl < 0"),
    "best_trade": MetricInfo("Best trade", "currency", "largest pnl of a closed trade"),
    "worst_trade": MetricInfo("Worst trade", "currency", "smallest pnl of a closed trade"),
    "avg_bars_held": MetricInfo("Average bars held", "number", "mean bars_held of closed trades"),
    "exposure": MetricInfo("Exposure", "fraction", "bars ending with a position / n_bars"),
    "turnover": MetricInfo("Turnover", "ratio", "Σ fill notional / mean(equity), whole period"),
    "fees_paid": MetricInfo("Fees paid", "currency", "sum of all fees"),
    "risk_free_rate": MetricInfo(
        "Risk-free rate", "fraction", "annual rf; per bar (1+rf)^(1/ppy)−1"
    ),
}


def periods_per_year_for(index: pd.DatetimeIndex | pd.Series) -> float:
    """Bars per year implied by the data: 365·86400 / median bar spacing in seconds.

    The median (not the mean) ignores the occasional exchange outage or gap, so hourly data with a
    few holes still annualises as hourly data.
    """
    ts, spacing = _timestamps_ns(index.index if isinstance(index, pd.Series) else index, "index")
    if spacing is None:
        raise ValueError(
            f"index: need at least 2 timestamps to infer the bar spacing, got {len(ts)}; "
            "pass periods_per_year explicitly"
        )
    return SECONDS_PER_YEAR / spacing


@dataclass(frozen=True, slots=True)
class SampleTime:
    """How an equity curve is spaced in time: everything annualisation needs, computed once.

    `compute_metrics` and the sweep's `summarise` both take their years, bars per year and gaps
    from here, so the two cannot annualise differently.
    """

    n_bars: int
    periods_per_year: float | None
    bar_seconds: float | None  # one bar interval: the median spacing (or a year / ppy)
    elapsed_seconds: float | None  # from the first bar's open to the last bar's close
    gap_bars: np.ndarray  # positions of the bars that follow a gap

    @property
    def years(self) -> float | None:
        """Calendar years of the sample: elapsed_seconds / (365 · 86 400)."""
        if self.elapsed_seconds is None:
            return None
        return self.elapsed_seconds / SECONDS_PER_YEAR

    @property
    def n_gaps(self) -> int:
        return len(self.gap_bars)

    def annualises(self, gap_policy: str) -> bool:
        """Whether annualised metrics are reported: bars per year known, and no gap unless the
        policy is "allow"."""
        check_gap_policy(gap_policy)
        return self.periods_per_year is not None and (self.n_gaps == 0 or gap_policy == "allow")


def sample_time(
    index: pd.DatetimeIndex,
    *,
    periods_per_year: float | None = None,
    gap_multiple: float = DEFAULT_GAP_MULTIPLE,
) -> SampleTime:
    """The `SampleTime` of bars (or an equity curve) with this strictly increasing index."""
    ts, spacing = _timestamps_ns(index, "index")
    return _sample_time(ts, spacing, periods_per_year, gap_multiple)


def elapsed_seconds(first_ns: int, last_ns: int, bar_seconds: float) -> float:
    """Calendar time covered by bars opening from `first_ns` to `last_ns` (UTC nanoseconds), from
    the first bar's open to the last bar's close: last − first + one bar interval, in seconds."""
    return (int(last_ns) - int(first_ns)) / _NS_PER_SECOND + bar_seconds


def check_gap_policy(gap_policy: str) -> str:
    if gap_policy not in GAP_POLICIES:
        raise ValueError(f"gap_policy must be one of {', '.join(GAP_POLICIES)}, got {gap_policy!r}")
    return gap_policy


def bar_returns(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """r_t = E_t / E_{t-1} − 1 with E_{-1} = initial_cash: one return per bar, the first too."""
    returns = np.empty_like(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns[0] = equity[0] / initial_cash
        np.divide(equity[1:], equity[:-1], out=returns[1:])
    returns -= 1.0
    return returns


def drawdown(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """Per-bar drawdown 1 − E_t / max(initial_cash, E_0..E_t), a positive fraction (0 at a high).

    The peak includes the initial cash, so a strategy that loses from its first bar is in drawdown
    from its first bar. Shared by `compute_metrics` and the report's underwater chart.
    """
    return 1.0 - equity / running_peak(equity, initial_cash)


def buy_and_hold_curve(closes: pd.DataFrame, initial_cash: float) -> pd.Series:
    """The reference a trader holds an account against: `initial_cash` split equally across the
    symbols (the columns of `closes`, one row per bar time) at each one's first close, and held,
    without fees: value_t = initial_cash × mean_i(C_i,t / C_i,first), where a symbol before its
    first bar counts as cash (1) and after it at its last close so far."""
    if closes.empty:
        return pd.Series(dtype=np.float64)
    first = closes.apply(lambda col: col.dropna().iloc[0] if col.notna().any() else np.nan)
    growth = (closes.ffill() / first).fillna(1.0)
    return initial_cash * growth.mean(axis=1)


def monthly_returns(equity: pd.Series, initial_cash: float) -> pd.DataFrame:
    """Each calendar month's return (UTC), one row per year, columns 1..12 and "year":
    r_m = E_m / E_(m-1) - 1, where E_m is the equity at the last bar of month m and E_(m-1) that of
    the month before with bars (the first month's is `initial_cash`: a backtest that starts mid-
    month shows that part of the month); the year's is the product of (1 + r_m) less 1, that is its
    last month's equity over the equity before its first. Months without bars are NaN."""
    if len(equity) == 0:
        return pd.DataFrame(columns=[*range(1, 13), "year"], dtype=np.float64)
    index = pd.DatetimeIndex(equity.index)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    closes = (
        pd.Series(equity.to_numpy(dtype=np.float64), index=index)
        .groupby([index.year, index.month])
        .last()
    )
    before = np.r_[initial_cash, closes.to_numpy()[:-1]]
    monthly = pd.Series(closes.to_numpy() / before - 1.0, index=closes.index)
    table = monthly.unstack().reindex(columns=range(1, 13))
    table["year"] = (1.0 + monthly).groupby(level=0).prod() - 1.0
    table.index.name = None
    table.columns.name = None
    return table


def running_peak(equity: np.ndarray, initial_cash: float) -> np.ndarray:
    """max(initial_cash, E_0..E_t) for every bar t: the high-water mark drawdowns start from."""
    peak = np.maximum(equity, initial_cash)
    return np.maximum.accumulate(peak, out=peak)


def compute_metrics(
    equity: pd.Series,
    trades: Sequence[Trade],
    initial_cash: float,
    *,
    fills_notional: float,
    fees_paid: float,
    exposure_bars: int | None = None,
    periods_per_year: float | None = None,
    risk_free_rate: float = 0.0,
    gap_policy: str = "refuse",
    gap_multiple: float = DEFAULT_GAP_MULTIPLE,
) -> dict[str, MetricValue]:
    """Summarise a backtest; see docs/metrics.md for every formula and convention.

    `equity` holds one value per bar (at the bar's close), indexed by strictly increasing UTC bar
    timestamps. `periods_per_year` defaults to the spacing of that index (`periods_per_year_for`);
    with a single bar and no explicit value the annualised metrics are None. CAGR compounds over
    calendar time. When the index has gaps (spacings above `gap_multiple` × the median) the
    annualised metrics (ANNUALISED) are None unless `gap_policy` is "allow".
    """
    check_gap_policy(gap_policy)
    values, ts, spacing = _validated_equity(equity)
    _check_finite("initial_cash", initial_cash, positive=True)
    _check_finite("fills_notional", fills_notional, nonnegative=True)
    _check_finite("fees_paid", fees_paid)
    _check_finite("risk_free_rate", risk_free_rate)
    if risk_free_rate <= -1.0:
        raise ValueError(f"risk_free_rate must be > -1 (an annual fraction), got {risk_free_rate}")
    n = len(values)
    if exposure_bars is not None and not (
        isinstance(exposure_bars, int | np.integer) and 0 <= exposure_bars <= n
    ):
        raise ValueError(f"exposure_bars must be an int in [0, n_bars={n}], got {exposure_bars!r}")
    clock = _sample_time(ts, spacing, periods_per_year, gap_multiple)
    ppy = clock.periods_per_year

    final = float(values[-1])
    out: dict[str, MetricValue] = {
        "n_bars": n,
        "periods_per_year": ppy,
        "elapsed_seconds": clock.elapsed_seconds,
        "n_gaps": clock.n_gaps,
        "initial_cash": float(initial_cash),
        "final_equity": final,
        "total_return": final / initial_cash - 1.0,
    }
    if clock.annualises(gap_policy):
        out.update(_return_stats(values, initial_cash, ppy, clock.years, risk_free_rate))
    else:
        out.update(dict.fromkeys(("cagr", "volatility", "sharpe", "sortino")))
    peak = running_peak(values, initial_cash)
    max_dd = max(1.0 - float((values / peak).min()), 0.0)
    out["max_drawdown"] = max_dd
    out["max_drawdown_duration"], out["max_drawdown_duration_seconds"] = _longest_underwater(
        values < peak, ts, spacing
    )
    cagr = out["cagr"]
    out["calmar"] = cagr / max_dd if cagr is not None and max_dd > 0.0 else None
    out.update(trade_stats(trades))
    out["exposure"] = exposure_bars / n if exposure_bars is not None else None
    mean_equity = float(values.mean())
    out["turnover"] = fills_notional / mean_equity if mean_equity > 0.0 else None
    out["fees_paid"] = float(fees_paid)
    out["risk_free_rate"] = float(risk_free_rate)
    return {key: _plain(out[key]) for key in METRICS}


def _return_stats(
    values: np.ndarray,
    initial_cash: float,
    ppy: float | None,
    years: float | None,
    risk_free_rate: float,
) -> dict[str, MetricValue]:
    """CAGR (over `years` of calendar time), volatility, Sharpe and Sortino (by `ppy`)."""
    stats: dict[str, MetricValue] = dict.fromkeys(("cagr", "volatility", "sharpe", "sortino"))
    if ppy is None:
        return stats
    n = len(values)
    stats["cagr"] = cagr(float(values[-1]) / initial_cash, years)
    # A return after a bar whose equity was <= 0 is meaningless (division by a non-positive base).
    if n < 2 or float(values[:-1].min()) <= 0.0:
        return stats
    root_ppy = math.sqrt(ppy)
    rf_bar = (1.0 + risk_free_rate) ** (1.0 / ppy) - 1.0
    excess = bar_returns(values, initial_cash)
    # Exactly constant returns have zero deviation; test for that exactly instead of comparing a
    # rounding-noise std with a tolerance.
    constant = excess.max() == excess.min()
    excess -= rf_bar  # in place: the raw returns are not needed any more
    mean_excess = float(excess.mean())
    # rf per bar is a constant, so std(r − rf) == std(r): one sample deviation serves volatility
    # and Sharpe. Written out (centre, dot) to avoid np.std's extra temporaries on long series.
    work = np.subtract(excess, mean_excess)
    std = math.sqrt(float(np.dot(work, work)) / (n - 1))
    stats["volatility"] = std * root_ppy
    if not constant:
        stats["sharpe"] = mean_excess / std * root_ppy
    downside = np.minimum(excess, 0.0, out=work)
    downside_dev = math.sqrt(float(np.dot(downside, downside)) / (n - 1))
    if downside_dev > 0.0:
        stats["sortino"] = mean_excess / downside_dev * root_ppy
    return stats


def cagr(growth: float, years: float | None) -> float | None:
    """growth^(1/years) − 1; −1 when everything was lost (growth <= 0); None when `years` is
    unknown or the power overflows a float (a short, strong run)."""
    if growth <= 0.0:
        return -1.0  # everything (or more) was lost: -100 % per year, whatever the period
    if years is None or not years > 0.0:
        return None
    # exp/log instead of ** so an absurd exponent overflows to inf -> None
    with np.errstate(over="ignore"):
        value = float(np.expm1(np.log(growth) / years))
    return value if math.isfinite(value) else None


def short_sample_note(metrics: Mapping[str, MetricValue]) -> str | None:
    """A note for a result whose CAGR compounds less than SHORT_SAMPLE_DAYS of calendar time into
    an annual rate (None otherwise): the figure is exact, but it is an extrapolation."""
    elapsed, growth = metrics.get("elapsed_seconds"), metrics.get("cagr")
    if not isinstance(elapsed, int | float) or not isinstance(growth, int | float):
        return None
    days = elapsed / 86_400
    if days >= SHORT_SAMPLE_DAYS:
        return None
    total = metrics.get("total_return")
    happened = f" ({float(total):+.2%})" if isinstance(total, int | float) else ""
    return (
        f"the run covers {days:.3g} days: CAGR ({float(growth):+.2%}) and Calmar compound that "
        f"into a yearly rate, an extrapolation rather than a forecast; the total return{happened} "
        "is what happened"
    )


def _sample_time(
    ts: np.ndarray, spacing: float | None, periods_per_year: float | None, gap_multiple: float
) -> SampleTime:
    """SampleTime from validated int64 ns timestamps and their median spacing (seconds)."""
    multiple = check_gap_multiple(gap_multiple)
    if periods_per_year is None:
        ppy = SECONDS_PER_YEAR / spacing if spacing is not None else None
    else:
        _check_finite("periods_per_year", periods_per_year, positive=True)
        ppy = float(periods_per_year)
    # One bar's interval: the median spacing; a single bar lasts a year / ppy when ppy is given.
    bar_seconds = spacing if spacing is not None else (SECONDS_PER_YEAR / ppy if ppy else None)
    elapsed = None
    if bar_seconds is not None:
        elapsed = elapsed_seconds(int(ts[0]), int(ts[-1]), bar_seconds)
    gaps = gap_positions(ts, spacing * _NS_PER_SECOND if spacing is not None else None, multiple)
    return SampleTime(len(ts), ppy, bar_seconds, elapsed, gaps)


def _longest_underwater(
    underwater: np.ndarray, ts: np.ndarray, spacing: float | None
) -> tuple[int, float | None]:
    """Longest run of consecutive underwater bars, in bars and in seconds (ties: the earliest run).

    Seconds run from the start of the first underwater bar to the start of the bar that
    regains the peak; a run still open at the end lasts until the end of the last bar (its
    start + the median spacing).
    """
    n = len(underwater)
    if not underwater.any():
        return 0, 0.0
    padded = np.concatenate(([False], underwater, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])  # alternating run starts and ends
    starts, ends = changes[0::2], changes[1::2]  # ends are exclusive: the regaining bar, or n
    k = int(np.argmax(ends - starts))
    first, stop = int(starts[k]), int(ends[k])
    if stop < n:
        seconds: float | None = (int(ts[stop]) - int(ts[first])) / _NS_PER_SECOND
    elif spacing is None:
        seconds = None  # one bar only: its length is unknown
    else:
        seconds = (int(ts[n - 1]) - int(ts[first])) / _NS_PER_SECOND + spacing
    return stop - first, seconds


def trade_stats(trades: Sequence[Trade]) -> dict[str, MetricValue]:
    """Statistics of closed round trips; a trade still open at the end of the data is ignored.
    The backtest's metrics and the dashboard's P&L by symbol (live/session.py) both use it."""
    closed = [t for t in trades if t.exit_time is not None]
    pnl = np.array([t.pnl for t in closed], dtype=float)
    for i, t in enumerate(closed):
        if not math.isfinite(pnl[i]):
            raise ValueError(
                f"trades: closed trade {i} ({t.symbol} {t.entry_time}) has pnl {t.pnl}"
            )
    stats: dict[str, MetricValue] = {"n_trades": len(closed)}
    if not closed:
        keys = ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss")
        stats.update(dict.fromkeys((*keys, "best_trade", "worst_trade", "avg_bars_held")))
        return stats
    wins, losses = pnl[pnl > 0.0], pnl[pnl < 0.0]
    gross_loss = float(losses.sum())
    stats["win_rate"] = len(wins) / len(closed)
    stats["profit_factor"] = float(wins.sum()) / -gross_loss if len(losses) else None
    stats["expectancy"] = float(pnl.mean())
    stats["avg_win"] = float(wins.mean()) if len(wins) else None
    stats["avg_loss"] = float(losses.mean()) if len(losses) else None
    stats["best_trade"] = float(pnl.max())
    stats["worst_trade"] = float(pnl.min())
    stats["avg_bars_held"] = float(np.mean([t.bars_held for t in closed]))
    return stats


def _validated_equity(equity: pd.Series) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Equity as float64 values, int64 UTC ns timestamps and the median bar spacing (seconds)."""
    if not isinstance(equity, pd.Series):
        raise TypeError(f"equity must be a pandas Series, got {type(equity).__name__}")
    if len(equity) == 0:
        raise ValueError("equity: empty series; a backtest needs at least one bar")
    ts, spacing = _timestamps_ns(equity.index, "equity index")
    try:
        values = equity.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"equity: values must be numeric ({exc})") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"equity: non-finite value {values[i]} at {equity.index[i]} (row {i})")
    return values, ts, spacing


def _timestamps_ns(index: pd.Index, name: str) -> tuple[np.ndarray, float | None]:
    """Int64 nanoseconds of a strictly increasing DatetimeIndex (pandas 3 may store s/ms/us units),
    and the median bar spacing in seconds (None for a single timestamp)."""
    if not isinstance(index, pd.DatetimeIndex):
        raise TypeError(
            f"{name} must be a DatetimeIndex of bar timestamps, got {type(index).__name__}"
        )
    ts = index.as_unit("ns").asi8
    steps = np.diff(ts)
    if len(steps) == 0:
        return ts, None
    smallest, largest = int(steps.min()), int(steps.max())
    if smallest <= 0:
        i = int(np.argmax(steps <= 0)) + 1
        raise ValueError(
            f"{name}: timestamps must be strictly increasing; row {i} ({index[i]}) "
            f"does not come after {index[i - 1]}"
        )
    # Regular bars (the usual case) need no median, which would sort a copy of the steps.
    typical = smallest if smallest == largest else float(np.median(steps))
    return ts, typical / _NS_PER_SECOND


def _check_finite(
    name: str, value: float, *, positive: bool = False, nonnegative: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _plain(value: object) -> MetricValue:
    """Plain Python int/float for JSON; a float that overflowed (inf) or is NaN becomes None."""
    if value is None:
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
