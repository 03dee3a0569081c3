"""Known answers for n1v1.backtest.metrics, worked out by hand (formulas: docs/metrics.md).

The main example is five daily bars starting from 10 000 of cash:

    E = 10 100, 9 900, 10 200, 10 000, 10 500

    r_0 = 10 100 / 10 000 − 1 =  100/10 000 =  0.0100000000
    r_1 =  9 900 / 10 100 − 1 = −200/10 100 = −0.0198019802
    r_2 = 10 200 /  9 900 − 1 =  300/9 900  =  0.0303030303
    r_3 = 10 000 / 10 200 − 1 = −200/10 200 = −0.0196078431
    r_4 = 10 500 / 10 000 − 1 =  500/10 000 =  0.0500000000
    Σr = 0.0508932070,  mean = 0.0101786414
    deviations² = 3.19127e−8, 8.98838e−4, 4.04991e−4, 8.87235e−4, 1.585741e−3;  Σ = 3.776836e−3
    sample variance = 3.776836e−3 / 4 = 9.442090e−4,  std = 0.0307279835
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from n1v1.backtest.metrics import METRICS, compute_metrics, periods_per_year_for
from n1v1.domain import Side, Symbol, Trade

CASH = 10_000.0
CURVE = [10_100.0, 9_900.0, 10_200.0, 10_000.0, 10_500.0]
# The returns written as exact fractions, as in the module docstring.
R = [100 / 10_000, -200 / 10_100, 300 / 9_900, -200 / 10_200, 500 / 10_000]
MEAN_R = sum(R) / 5  # 0.0508932070 / 5 = 0.0101786414
STD_R = math.sqrt(sum((r - MEAN_R) ** 2 for r in R) / 4)  # sqrt(3.776836e-3 / 4) = 0.0307279835


def _equity(values: list[float], freq: str = "D", start: str = "2024-01-01") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq=freq, tz="UTC")
    return pd.Series(values, index=index, dtype=float)


def _metrics(values: list[float], freq: str = "D", **kwargs: object) -> dict:
    kwargs.setdefault("fills_notional", 0.0)
    kwargs.setdefault("fees_paid", 0.0)
    return compute_metrics(_equity(values, freq), kwargs.pop("trades", []), CASH, **kwargs)


def _trade(pnl: float, bars: int = 1, closed: bool = True) -> Trade:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return Trade(
        symbol=Symbol("BTC/USDT"),
        side=Side.BUY,
        qty=1.0,
        entry_time=t0,
        entry_price=100.0,
        exit_time=t0 + pd.Timedelta(days=bars) if closed else None,
        exit_price=100.0 + pnl if closed else None,
        pnl=pnl,
        bars_held=bars,
    )


# --- returns, annualisation -------------------------------------------------------------------


def test_intermediate_numbers_of_the_worked_example() -> None:
    # Guards the hand arithmetic in the module docstring that the other tests lean on.
    assert abs(MEAN_R - 0.0101786414) < 1e-10
    assert abs(STD_R - 0.0307279835) < 1e-10


def test_daily_curve_known_answers() -> None:
    m = _metrics(CURVE)  # ppy inferred from the daily index: 365·86400 / 86400 = 365
    assert m["periods_per_year"] == 365.0
    assert m["n_bars"] == 5
    assert m["final_equity"] == 10_500.0
    # 10 500 / 10 000 − 1 = 0.05
    assert m["total_return"] == pytest.approx(0.05, rel=1e-12)
    # years = 5/365 -> cagr = 1.05^(365/5) − 1 = 1.05^73 − 1 = 35.2223909 − 1 = 34.2223909
    assert m["cagr"] == pytest.approx(1.05**73 - 1, rel=1e-9)
    assert m["cagr"] == pytest.approx(34.2223909, rel=1e-8)
    # volatility = 0.0307279835 · √365 = 0.0307279835 · 19.1049732 = 0.5870573
    assert m["volatility"] == pytest.approx(STD_R * math.sqrt(365), rel=1e-9)
    assert m["volatility"] == pytest.approx(0.5870573, rel=1e-6)
    # sharpe (rf = 0) = 0.0101786414 / 0.0307279835 · 19.1049732 = 6.3285204
    assert m["sharpe"] == pytest.approx(MEAN_R / STD_R * math.sqrt(365), rel=1e-9)
    assert m["sharpe"] == pytest.approx(6.3285204, rel=1e-6)
    # downside: only r_1 and r_3 are below 0:
    #   DD = sqrt((0.0198019802² + 0.0196078431²) / 4) = sqrt((3.921184e-4 + 3.844675e-4) / 4)
    #      = sqrt(1.941465e-4) = 0.0139336457
    # sortino = 0.0101786414 / 0.0139336457 · 19.1049732 = 13.9563381
    downside = math.sqrt(((200 / 10_100) ** 2 + (200 / 10_200) ** 2) / 4)
    assert downside == pytest.approx(0.0139336457, abs=1e-10)
    assert m["sortino"] == pytest.approx(MEAN_R / downside * math.sqrt(365), rel=1e-9)
    assert m["sortino"] == pytest.approx(13.9563381, rel=1e-6)
    # calmar = 34.2223909 / (200/10 100 = 0.0198019802) = 1728.2307
    assert m["calmar"] == pytest.approx((1.05**73 - 1) / (200 / 10_100), rel=1e-9)


def test_hourly_curve_annualises_with_8760_bars_per_year() -> None:
    m = _metrics(CURVE, freq="h")  # ppy = 365·86400 / 3600 = 8760
    assert m["periods_per_year"] == 8760.0
    # same per-bar returns, only √ppy changes: √8760 = 93.5948717
    # sharpe = 0.0101786414 / 0.0307279835 · 93.5948717 = 31.0032917  (= 6.3285204 · √24)
    assert m["sharpe"] == pytest.approx(31.0032917, rel=1e-6)
    assert m["sharpe"] == pytest.approx(6.3285204 * math.sqrt(24), rel=1e-6)
    # sortino = 0.0101786414 / 0.0139336457 · 93.5948717 = 68.3718141
    assert m["sortino"] == pytest.approx(68.3718141, rel=1e-6)
    # volatility = 0.0307279835 · 93.5948717 = 2.8759817
    assert m["volatility"] == pytest.approx(2.8759817, rel=1e-6)
    # 5 hourly bars are 5/8760 of a year: cagr = 1.05^1752 − 1 = e^(1752·ln 1.05) − 1
    #   = e^(1752 · 0.0487901642) = e^85.4803676 = 1.32939e37
    assert m["cagr"] == pytest.approx(math.exp(1752 * math.log(1.05)) - 1, rel=1e-9)
    assert m["cagr"] == pytest.approx(1.32939e37, rel=1e-5)


def test_explicit_periods_per_year_overrides_the_index() -> None:
    m = _metrics(CURVE, freq="h", periods_per_year=365)
    assert m["periods_per_year"] == 365.0
    assert m["sharpe"] == pytest.approx(6.3285204, rel=1e-6)


def test_risk_free_rate_moves_the_mean_not_the_deviation() -> None:
    m = _metrics(CURVE, risk_free_rate=0.05)
    # rf per bar = 1.05^(1/365) − 1 = 0.000133680617
    rf_bar = 1.05 ** (1 / 365) - 1
    assert rf_bar == pytest.approx(0.000133680617, abs=1e-12)
    # mean excess = 0.0101786414 − 0.0001336806 = 0.0100449608; std(r − rf) = std(r) = 0.0307279835
    # sharpe = 0.0100449608 / 0.0307279835 · 19.1049732 = 6.2454051
    assert m["sharpe"] == pytest.approx((MEAN_R - rf_bar) / STD_R * math.sqrt(365), rel=1e-9)
    assert m["sharpe"] == pytest.approx(6.2454051, rel=1e-6)
    # excess returns below 0: x_1 = −0.0198019802 − 0.0001336806 = −0.0199356608
    #                         x_3 = −0.0196078431 − 0.0001336806 = −0.0197415238
    # DD = sqrt((0.0199356608² + 0.0197415238²) / 4) = sqrt((3.974306e-4 + 3.897277e-4) / 4)
    #    = 0.0140281711;  sortino = 0.0100449608 / 0.0140281711 · 19.1049732 = 13.6802371
    downside = math.sqrt(((R[1] - rf_bar) ** 2 + (R[3] - rf_bar) ** 2) / 4)
    assert downside == pytest.approx(0.0140281711, abs=1e-10)
    assert m["sortino"] == pytest.approx(13.6802371, rel=1e-6)
    # volatility does not involve rf
    assert m["volatility"] == pytest.approx(0.5870573, rel=1e-6)
    assert m["risk_free_rate"] == 0.05


def test_periods_per_year_for_common_frequencies() -> None:
    assert periods_per_year_for(_equity([1.0] * 3, "D").index) == 365.0
    assert periods_per_year_for(_equity([1.0] * 3, "h").index) == 8760.0
    # 5-minute bars: 31 536 000 s / 300 s = 105 120
    assert periods_per_year_for(_equity([1.0] * 3, "5min")) == 105_120.0


def test_periods_per_year_uses_the_median_spacing_so_a_gap_does_not_matter() -> None:
    # hourly bars with one 10-hour hole: spacings 1,1,10,1,1 h -> median 1 h -> 8760
    hours = [0, 1, 2, 12, 13, 14]
    index = pd.DatetimeIndex(
        [pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=h) for h in hours]
    )
    assert periods_per_year_for(index) == 8760.0


def test_second_resolution_index_is_handled() -> None:
    # pandas 3 may store timestamps in s/ms/us; the spacing must still be measured in seconds
    index = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC", unit="s")
    m = compute_metrics(pd.Series(CURVE, index=index), [], CASH, fills_notional=0, fees_paid=0)
    assert m["periods_per_year"] == 365.0
    assert m["max_drawdown_duration_seconds"] == 86_400.0


# --- drawdown ---------------------------------------------------------------------------------


def test_drawdown_of_the_worked_example() -> None:
    m = _metrics(CURVE)
    # peaks (incl. 10 000 start): 10 100, 10 100, 10 200, 10 200, 10 500
    # drawdowns: 0, 1 − 9 900/10 100 = 0.0198019802, 0, 1 − 10 000/10 200 = 0.0196078431, 0
    assert m["max_drawdown"] == pytest.approx(200 / 10_100, rel=1e-12)
    # two one-bar spells (bar 1, bar 3); the earlier is reported: bar 1 (day 2) to the regaining
    # bar 2 (day 3) = 86 400 s
    assert m["max_drawdown_duration"] == 1
    assert m["max_drawdown_duration_seconds"] == 86_400.0


def test_drawdown_that_never_recovers() -> None:
    m = _metrics([10_200.0, 9_800.0, 9_900.0, 9_700.0], freq="h")
    # peak 10 200 at bar 0; bars 1, 2, 3 stay below it until the end
    # max_drawdown = 1 − 9 700/10 200 = 500/10 200 = 0.0490196078
    assert m["max_drawdown"] == pytest.approx(500 / 10_200, rel=1e-12)
    assert m["max_drawdown_duration"] == 3
    # from the start of bar 1 to the end of bar 3: (3 h − 1 h) + 1 h spacing = 3 h = 10 800 s
    assert m["max_drawdown_duration_seconds"] == 10_800.0


def test_drawdown_measured_from_initial_cash() -> None:
    # 9 900 and 9 950 are below the 10 000 start; bar 2 regains it exactly (E >= peak)
    m = _metrics([9_900.0, 9_950.0, 10_000.0, 10_050.0])
    assert m["max_drawdown"] == pytest.approx(0.01, rel=1e-12)  # 1 − 9 900/10 000
    assert m["max_drawdown_duration"] == 2
    assert m["max_drawdown_duration_seconds"] == 2 * 86_400.0  # day 1 -> day 3


def test_longest_spell_wins_over_deepest() -> None:
    # deep one-bar dip (−10 %), then a shallow three-bar spell (−1 %) that never recovers
    m = _metrics([10_000.0, 9_000.0, 10_100.0, 10_000.0, 10_050.0, 10_090.0])
    assert m["max_drawdown"] == pytest.approx(0.1, rel=1e-12)
    assert m["max_drawdown_duration"] == 3
    assert m["max_drawdown_duration_seconds"] == 3 * 86_400.0


def test_monotonic_curve_has_no_drawdown_and_no_calmar() -> None:
    m = _metrics([10_100.0, 10_200.0, 10_300.0])
    assert m["max_drawdown"] == 0.0
    assert m["max_drawdown_duration"] == 0
    assert m["max_drawdown_duration_seconds"] == 0.0
    assert m["calmar"] is None
    # no bar below rf = 0 -> downside deviation 0 -> sortino undefined
    assert m["sortino"] is None
    assert m["sharpe"] is not None


# --- undefined values -------------------------------------------------------------------------


def test_flat_curve_has_no_sharpe_or_sortino() -> None:
    m = _metrics([CASH] * 4)
    assert m["volatility"] == 0.0
    assert m["sharpe"] is None
    assert m["sortino"] is None
    assert m["cagr"] == 0.0
    assert m["max_drawdown"] == 0.0


def test_single_bar_without_ppy_has_no_annualised_metrics() -> None:
    m = _metrics([10_100.0])
    assert m["periods_per_year"] is None
    for key in ("cagr", "volatility", "sharpe", "sortino", "calmar"):
        assert m[key] is None, key
    assert m["total_return"] == pytest.approx(0.01, rel=1e-12)


def test_single_bar_with_ppy_has_cagr_but_no_deviation() -> None:
    m = _metrics([10_100.0], periods_per_year=365)
    assert m["cagr"] == pytest.approx(1.01**365 - 1, rel=1e-9)  # years = 1/365
    assert m["volatility"] is None and m["sharpe"] is None and m["sortino"] is None


def test_single_underwater_bar_has_unknown_duration_in_seconds() -> None:
    m = _metrics([9_000.0], periods_per_year=365)
    assert m["max_drawdown_duration"] == 1
    assert m["max_drawdown_duration_seconds"] is None


def test_wiped_out_account_reports_cagr_minus_one() -> None:
    m = _metrics([6_000.0, -500.0])
    assert m["cagr"] == -1.0
    # 1 − (−500)/10 000 = 1.05: more than everything was lost
    assert m["max_drawdown"] == pytest.approx(1.05, rel=1e-12)


def test_returns_after_zero_equity_are_undefined() -> None:
    m = _metrics([6_000.0, 0.0, 50.0])
    assert m["volatility"] is None and m["sharpe"] is None and m["sortino"] is None
    assert m["cagr"] == pytest.approx((50 / 10_000) ** (365 / 3) - 1, rel=1e-9)


def test_cagr_overflow_is_null_not_inf() -> None:
    # doubling in 2 minute bars: 2^(525 600 / 2) overflows a float
    m = _metrics([15_000.0, 20_000.0], freq="min")
    assert m["cagr"] is None
    assert m["calmar"] is None


def test_all_values_are_plain_json_types() -> None:
    trades = [_trade(50.0), _trade(-20.0)]
    for values in (CURVE, [CASH] * 3, [10_100.0], [15_000.0, 20_000.0]):
        m = _metrics(values, freq="min", trades=trades, exposure_bars=1)
        assert list(m) == list(METRICS)
        for key, value in m.items():
            assert value is None or type(value) in (int, float), (key, type(value))
        json.dumps(m, allow_nan=False)  # raises on NaN/inf


# --- trades, exposure, turnover ---------------------------------------------------------------


def test_trade_statistics_with_wins_losses_and_an_open_trade() -> None:
    trades = [
        _trade(120.0, bars=3),
        _trade(-40.0, bars=5),
        _trade(0.0, bars=1),
        _trade(80.0, bars=2),
        _trade(-60.0, bars=4),
        _trade(999.0, bars=7, closed=False),  # still open: ignored everywhere
    ]
    m = _metrics(CURVE, trades=trades)
    assert m["n_trades"] == 5
    assert m["win_rate"] == pytest.approx(2 / 5)  # 120 and 80 win; 0 is not a win
    # gross profit 120 + 80 = 200; gross loss −40 − 60 = −100 -> 200/100 = 2.0
    assert m["profit_factor"] == pytest.approx(2.0)
    # (120 − 40 + 0 + 80 − 60) / 5 = 100 / 5 = 20
    assert m["expectancy"] == pytest.approx(20.0)
    assert m["avg_win"] == pytest.approx(100.0)  # (120 + 80) / 2
    assert m["avg_loss"] == pytest.approx(-50.0)  # (−40 − 60) / 2
    assert m["best_trade"] == 120.0
    assert m["worst_trade"] == -60.0
    assert m["avg_bars_held"] == pytest.approx(3.0)  # (3 + 5 + 1 + 2 + 4) / 5


def test_profit_factor_without_losses_is_null() -> None:
    m = _metrics(CURVE, trades=[_trade(50.0), _trade(30.0)])
    assert m["profit_factor"] is None
    assert m["win_rate"] == 1.0
    assert m["avg_loss"] is None
    assert m["avg_win"] == pytest.approx(40.0)  # (50 + 30) / 2


def test_profit_factor_without_wins_is_zero() -> None:
    m = _metrics(CURVE, trades=[_trade(-10.0), _trade(-30.0)])
    assert m["profit_factor"] == 0.0  # 0 / |−40|
    assert m["win_rate"] == 0.0
    assert m["avg_win"] is None


def test_no_closed_trades() -> None:
    m = _metrics(CURVE, trades=[_trade(5.0, closed=False)])
    assert m["n_trades"] == 0
    for key in ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss"):
        assert m[key] is None, key
    for key in ("best_trade", "worst_trade", "avg_bars_held"):
        assert m[key] is None, key


def test_exposure_turnover_and_fees() -> None:
    m = _metrics(CURVE, exposure_bars=3, fills_notional=20_100.0, fees_paid=20.1)
    assert m["exposure"] == pytest.approx(3 / 5)
    # mean equity = (10 100 + 9 900 + 10 200 + 10 000 + 10 500) / 5 = 50 700 / 5 = 10 140
    # turnover = 20 100 / 10 140 = 1.9822485
    assert m["turnover"] == pytest.approx(20_100 / 10_140, rel=1e-12)
    assert m["fees_paid"] == 20.1
    assert _metrics(CURVE)["exposure"] is None


# --- bad input --------------------------------------------------------------------------------


def test_rejects_bad_equity() -> None:
    with pytest.raises(ValueError, match="empty"):
        _metrics([])
    with pytest.raises(ValueError, match=r"row 2"):
        _metrics([10_000.0, 10_100.0, float("nan")])
    with pytest.raises(TypeError, match="DatetimeIndex"):
        compute_metrics(pd.Series([1.0, 2.0]), [], CASH, fills_notional=0, fees_paid=0)
    backwards = _equity(CURVE).iloc[::-1]
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_metrics(backwards, [], CASH, fills_notional=0, fees_paid=0)


def test_rejects_bad_scalars() -> None:
    equity = _equity(CURVE)
    with pytest.raises(ValueError, match="initial_cash"):
        compute_metrics(equity, [], 0.0, fills_notional=0, fees_paid=0)
    with pytest.raises(ValueError, match="exposure_bars"):
        compute_metrics(equity, [], CASH, fills_notional=0, fees_paid=0, exposure_bars=6)
    with pytest.raises(ValueError, match="fills_notional"):
        compute_metrics(equity, [], CASH, fills_notional=-1.0, fees_paid=0)
    with pytest.raises(ValueError, match="periods_per_year"):
        compute_metrics(equity, [], CASH, fills_notional=0, fees_paid=0, periods_per_year=0)
    with pytest.raises(ValueError, match="risk_free_rate"):
        compute_metrics(equity, [], CASH, fills_notional=0, fees_paid=0, risk_free_rate=-1.0)
    with pytest.raises(ValueError, match="at least 2"):
        periods_per_year_for(equity.index[:1])


def test_rejects_non_finite_trade_pnl() -> None:
    with pytest.raises(ValueError, match="closed trade 1"):
        _metrics(CURVE, trades=[_trade(1.0), _trade(float("inf"))])


# --- calendar time and gaps (docs/metrics.md, "Gaps") -------------------------------------------


def _curve_at(offsets: list[float], values: list[float], unit: str = "D") -> pd.Series:
    """Equity at the given offsets (in days or hours) from 2024-01-01 UTC."""
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    index = pd.DatetimeIndex([t0 + pd.Timedelta(k, unit=unit) for k in offsets])
    return pd.Series(values, index=index, dtype=float)


def test_cagr_compounds_over_calendar_time_not_bar_count() -> None:
    # daily bars on days 0, 1, 2, 4, 5: one missing day (a 2-day spacing is not a gap at 10x)
    # spacings 1, 1, 2, 1 d -> median 1 d; elapsed = (5 − 0) d + one 1-day bar = 6 d
    m = compute_metrics(
        _curve_at([0, 1, 2, 4, 5], CURVE), [], CASH, fills_notional=0.0, fees_paid=0.0
    )
    assert m["n_gaps"] == 0
    assert m["elapsed_seconds"] == 6 * 86_400.0
    # years = 6/365 -> cagr = 1.05^(365/6) − 1 = e^(60.8333 · 0.0487901642) − 1
    #   = e^2.9680683 − 1 = 19.4553 − 1 = 18.4553   (bar counting gave 1.05^73 − 1 = 34.2224)
    assert m["cagr"] == pytest.approx(1.05 ** (365 / 6) - 1, rel=1e-9)
    assert m["cagr"] == pytest.approx(18.4553, rel=1e-4)
    # Calmar follows: 18.4553 / (200/10 100)
    assert m["calmar"] == pytest.approx((1.05 ** (365 / 6) - 1) / (200 / 10_100), rel=1e-9)
    # volatility, Sharpe and Sortino still use ppy = 365 from the median spacing
    assert m["periods_per_year"] == 365.0
    assert m["sharpe"] == pytest.approx(6.3285204, rel=1e-6)


def test_elapsed_time_of_a_regular_curve_is_bars_times_spacing() -> None:
    m = _metrics(CURVE, freq="h")
    # 5 hourly bars: (4 h − 0 h) + 1 h = 5 h = 18 000 s, so years = 5/8760, as n / ppy gave
    assert m["elapsed_seconds"] == 18_000.0
    assert m["cagr"] == pytest.approx(math.exp(1752 * math.log(1.05)) - 1, rel=1e-9)


# hourly bars at hours 0, 1, 2, then a hole until hour 30, then 31, 32
GAPPY_HOURS = [0, 1, 2, 30, 31, 32]
GAPPY = [10_100.0, 9_999.0, 10_200.99, 12_000.0, 12_120.0, 12_241.2]


def test_a_gap_withholds_the_annualised_metrics_by_default() -> None:
    m = compute_metrics(
        _curve_at(GAPPY_HOURS, GAPPY, "h"), [], CASH, fills_notional=0.0, fees_paid=0.0
    )
    # spacings 1, 1, 28, 1, 1 h: median 1 h; 28 h > 10 × 1 h is a gap
    assert m["n_gaps"] == 1
    for key in ("cagr", "volatility", "sharpe", "sortino", "calmar"):
        assert m[key] is None, key
    # what does not annualise is still reported
    assert m["total_return"] == pytest.approx(12_241.2 / 10_000 - 1, rel=1e-12)  # 0.22412
    assert m["max_drawdown"] == pytest.approx(1 - 9_999 / 10_100, rel=1e-12)  # 0.01
    assert m["periods_per_year"] == 8760.0
    # elapsed: (32 h − 0 h) + 1 h = 33 h = 118 800 s, the gap included
    assert m["elapsed_seconds"] == 118_800.0


def test_allow_annualises_across_the_gap_in_calendar_time() -> None:
    m = compute_metrics(
        _curve_at(GAPPY_HOURS, GAPPY, "h"),
        [],
        CASH,
        fills_notional=0.0,
        fees_paid=0.0,
        gap_policy="allow",
    )
    # years = 33 h / 8760 h; growth 1.22412 -> cagr = 1.22412^(8760/33) − 1
    #   = e^(265.4545 · 0.2022222) − 1 = e^53.680807 − 1 = 2.05721e23
    assert m["cagr"] == pytest.approx(1.22412 ** (8760 / 33) - 1, rel=1e-9)
    assert m["cagr"] == pytest.approx(2.05721e23, rel=1e-5)
    # the return across the gap (12 000 / 10 200.99 − 1 = 0.176357) counts as one bar's return
    r = [0.01, -0.01, 10_200.99 / 9_999 - 1, 12_000 / 10_200.99 - 1, 0.01, 0.01]
    mean = sum(r) / 6
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 5)
    assert m["volatility"] == pytest.approx(std * math.sqrt(8760), rel=1e-9)


def test_gap_multiple_is_a_strict_threshold() -> None:
    # daily bars 0, 1, 2, 12: the last spacing is exactly 10 × the median (1 d): not a gap
    ten = compute_metrics(
        _curve_at([0, 1, 2, 12], CURVE[:4]), [], CASH, fills_notional=0.0, fees_paid=0.0
    )
    assert ten["n_gaps"] == 0 and ten["cagr"] is not None
    # ... but a gap once the multiple is lowered below 10
    nine = compute_metrics(
        _curve_at([0, 1, 2, 12], CURVE[:4]),
        [],
        CASH,
        fills_notional=0.0,
        fees_paid=0.0,
        gap_multiple=9.5,
    )
    assert nine["n_gaps"] == 1 and nine["cagr"] is None


def test_bad_gap_settings_are_errors_naming_the_field() -> None:
    equity = _equity(CURVE)
    with pytest.raises(ValueError, match="gap_policy"):
        compute_metrics(equity, [], CASH, fills_notional=0, fees_paid=0, gap_policy="ignore")
    with pytest.raises(ValueError, match="gap_multiple"):
        compute_metrics(equity, [], CASH, fills_notional=0, fees_paid=0, gap_multiple=1.0)


def test_segment_metrics_split_at_the_gap() -> None:
    from n1v1.backtest.gaps import segment_metrics
    from n1v1.backtest.metrics import sample_time

    equity = _curve_at(GAPPY_HOURS, GAPPY, "h")
    rows = segment_metrics(equity, CASH, sample_time(equity.index))
    assert [(r["start"], r["end"], r["n_bars"]) for r in rows] == [
        ("2024-01-01T00:00:00+00:00", "2024-01-01T02:00:00+00:00", 3),
        ("2024-01-02T06:00:00+00:00", "2024-01-02T08:00:00+00:00", 3),
    ]
    first, second = rows
    # segment 0 from the initial cash: returns 0.01, −0.01, 10 200.99 / 9 999 − 1 = 0.0202010
    #   mean = 0.0202010/3 = 0.0067337; squared deviations 1.06689e-5, 2.80016e-4, 1.81369e-4;
    #   Σ = 4.72054e-4, /2 = 2.36027e-4, std = 0.0153632; volatility = std · √8760 = 1.437914
    assert first["total_return"] == pytest.approx(0.020099, rel=1e-9)
    assert first["elapsed_seconds"] == 3 * 3_600.0
    assert first["volatility"] == pytest.approx(1.437914, rel=1e-5)
    assert first["cagr"] == pytest.approx(1.020099 ** (8760 / 3) - 1, rel=1e-9)
    assert first["max_drawdown"] == pytest.approx(0.01, rel=1e-9)  # 1 − 9 999/10 100
    # segment 1 starts at its first bar's close (12 000): the return across the gap is in no
    # segment. Returns 0.01, 0.01 -> total 12 241.2/12 000 − 1 = 0.0201 over 2 h (31 h -> 32 h
    # closes) = 7 200 s; constant returns: volatility 0, Sharpe undefined
    assert second["total_return"] == pytest.approx(0.0201, rel=1e-9)
    assert second["elapsed_seconds"] == 7_200.0
    assert second["cagr"] == pytest.approx(1.0201 ** (8760 / 2) - 1, rel=1e-9)
    assert second["volatility"] == pytest.approx(0.0, abs=1e-12)
    assert second["sharpe"] is None


def test_sample_time_is_shared_by_cagr_and_the_sweep() -> None:
    from n1v1.backtest.metrics import SECONDS_PER_YEAR, elapsed_seconds, sample_time

    clock = sample_time(_curve_at(GAPPY_HOURS, GAPPY, "h").index)
    assert clock.gap_bars.tolist() == [3]  # bar 3 (hour 30) follows the gap
    assert clock.elapsed_seconds == elapsed_seconds(0, 32 * 3_600 * 10**9, 3_600.0) == 118_800.0
    assert clock.years == 118_800.0 / SECONDS_PER_YEAR
    assert not clock.annualises("refuse") and not clock.annualises("segment")
    assert clock.annualises("allow")


def test_a_cagr_of_a_short_sample_carries_a_note_that_it_extrapolates() -> None:
    from n1v1.backtest.metrics import short_sample_note

    # 5 daily bars: 5 days of calendar time; 10 500 / 10 000 = 1.05 -> 1.05^73 − 1 = +3 422.24 %
    note = short_sample_note(_metrics(CURVE))
    assert note == (
        "the run covers 5 days: CAGR (+3422.24%) and Calmar compound that into a yearly rate, an "
        "extrapolation rather than a forecast; the total return (+5.00%) is what happened"
    )
    # 30 daily bars are 30 days: no note; nor when there is no CAGR to read (one bar, no ppy)
    assert short_sample_note(_metrics([10_000.0 + i for i in range(30)])) is None
    assert short_sample_note(_metrics([10_000.0, 10_100.0], freq="7D")) is not None  # 14 days
    assert short_sample_note(_metrics([10_000.0])) is None
