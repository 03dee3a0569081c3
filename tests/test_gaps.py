"""Gap detection (n1v1/data/gaps.py) and what a backtest reports about gaps (backtest/gaps.py).

A gap is a bar spacing above gap_multiple x the median spacing; the known answers below are
counted by hand on small indexes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1.backtest.gaps import gap_notes, trade_durations, trade_gap_note
from n1v1.data.gaps import check_gap_multiple, gap_positions, long_gaps
from n1v1.domain import Side, Symbol, Trade

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _hours(*offsets: float) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([T0 + pd.Timedelta(hours=h) for h in offsets])


def test_long_gaps_known_answers() -> None:
    # spacings 1, 1, 3, 1, 20, 1 h: median 1 h; only the 20-hour spacing exceeds 10 x 1 h
    index = _hours(0, 1, 2, 5, 6, 26, 27)
    (gap,) = long_gaps(index)
    assert gap.bar == 5  # hour 26 is the first bar after the hole
    assert (gap.before, gap.after) == (index[4], index[5])
    # missing bar open times 7 h .. 25 h: 19 bars; the hole lasts 26 − 6 − 1 = 19 h
    assert (gap.start, gap.end) == (T0 + pd.Timedelta(hours=7), T0 + pd.Timedelta(hours=25))
    assert gap.missing_bars == 19 and gap.seconds == 19 * 3_600.0
    assert gap.describe() == "2024-01-01 07:00 to 2024-01-02 01:00 UTC (19 missing bars, 19h)"
    # the 3-hour spacing becomes a gap when the multiple is below 3
    assert [g.bar for g in long_gaps(index, 2.5)] == [3, 5]


def test_a_hole_off_the_bar_grid_counts_the_bar_times_strictly_inside() -> None:
    # spacing 1 h, then 12.5 h: the bar times 5 h + k h for k = 1..12 lie before 17.5 h
    index = _hours(0, 1, 2, 3, 4, 5, 17.5, 18.5)
    (gap,) = long_gaps(index)
    assert gap.missing_bars == 12  # ceil(12.5) − 1
    assert gap.seconds == 11.5 * 3_600.0  # 12.5 h − one 1-hour bar
    assert gap.end == T0 + pd.Timedelta(hours=17)


def test_no_gaps_in_short_or_regular_indexes() -> None:
    assert long_gaps(_hours(0)) == [] and long_gaps(_hours(0, 50)) == []
    assert long_gaps(pd.date_range("2024-01-01", periods=100, freq="min", tz="UTC")) == []
    assert gap_positions(np.array([0, 10], dtype=np.int64), None, 10.0).tolist() == []


def test_the_multiple_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="gap_multiple must be finite and > 1"):
        check_gap_multiple(1.0)
    with pytest.raises(ValueError, match="gap_multiple"):
        long_gaps(_hours(0, 1), float("nan"))
    with pytest.raises(TypeError, match="gap_multiple must be a number"):
        check_gap_multiple("10")  # type: ignore[arg-type]


def _trade(entry_h: float, exit_h: float | None, pnl: float) -> Trade:
    return Trade(
        symbol=Symbol("BTC/USD"),
        side=Side.BUY,
        qty=1.0,
        entry_time=T0 + pd.Timedelta(hours=entry_h),
        entry_price=100.0,
        exit_time=None if exit_h is None else T0 + pd.Timedelta(hours=exit_h),
        exit_price=None if exit_h is None else 100.0 + pnl,
        pnl=pnl,
        bars_held=3,
    )


def test_trade_durations_and_which_trades_span_a_gap() -> None:
    index = _hours(0, 1, 2, 30, 31, 32)  # the gap: bar 3 (hour 30) follows a 28-hour spacing
    trades = [_trade(0, 2, 5.0), _trade(2, 31, 80.0), _trade(30, 31, -1.0), _trade(1, None, 9.0)]
    durations, spans = trade_durations(trades, index, np.array([3]))
    # 2 h; 29 h across the gap; 1 h after it; still open (from hour 1 to the last bar: spans)
    assert durations == [7_200.0, 104_400.0, 3_600.0, None]
    assert spans == [False, True, False, True]
    (note,) = trade_gap_note(trades, durations, spans)
    assert note.startswith("2 trades open across a gap")
    # the largest |pnl| first: 80 then 9
    assert note.index("2024-01-01 02:00 to 2024-01-02 07:00 (1.2 days)") < note.index(
        "2024-01-01 01:00 to still open"
    )


def test_gap_notes_say_what_each_policy_did() -> None:
    gaps = long_gaps(_hours(0, 1, 2, 30, 31, 32))
    refuse = gap_notes(gaps, "refuse", 10.0)
    assert refuse[0] == (
        "the bars have 1 gap longer than 10x the median bar spacing "
        "(2024-01-01 03:00 to 2024-01-02 05:00 UTC (27 missing bars, 1d 3h))"
    )
    assert refuse[1].startswith("annualised metrics (CAGR, volatility, Sharpe, Sortino, Calmar)")
    assert "backtest.gaps=allow" in refuse[1]
    assert gap_notes(gaps, "segment", 10.0)[1].startswith("annualised metrics withheld")
    assert gap_notes(gaps, "allow", 10.0)[1].startswith("WARNING: annualised across 1 gap ")
    assert gap_notes([], "refuse", 10.0) == []
    with pytest.raises(ValueError, match="gap_policy"):
        gap_notes(gaps, "skip", 10.0)


def test_evaluate_names_the_folds_that_straddle_a_gap() -> None:
    from n1v1.config import Settings
    from n1v1.ml.evaluation import _fold_gap_notes

    index = _hours(*range(10), *range(40, 50))  # 30-hour spacing before bar 10
    bars = pd.DataFrame({"close": np.ones(20)}, index=index)
    notes = _fold_gap_notes(bars, 2, (0, 8), (8, 20), Settings())
    assert notes == [
        "fold 2: its test bars (2024-01-01 08:00 to 2024-01-03 01:00) straddle 1 gap (largest: "
        "2024-01-01 10:00 to 2024-01-02 15:00 UTC (30 missing bars, 1d 6h)); their backtests "
        "follow backtest.gaps=refuse"
    ]
    assert _fold_gap_notes(bars, 2, (0, 8), (10, 20), Settings()) == []
