"""The economic test of a model (n1v1.ml.economics): the strategy and buy-and-hold trade the same
bars through the backtest engine, each session on its own, returns compounded by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from n1v1.config import Settings
from n1v1.ml.economics import compare_with_buy_and_hold, row_spans
from n1v1.strategies.trend import BuyAndHold

# Two sessions a day apart: 100 -> 105 -> 110, then 200 -> 190.
STAMPS = ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:02", "2024-01-02 00:00"]
INDEX = pd.DatetimeIndex([*STAMPS, "2024-01-02 00:01"], tz="UTC", name="timestamp")
CLOSES = [100.0, 105.0, 110.0, 200.0, 190.0]
BARS = pd.DataFrame(
    {"open": CLOSES, "high": CLOSES, "low": CLOSES, "close": CLOSES, "volume": np.ones(5)},
    index=INDEX,
)


def settings(fee: float) -> Settings:
    # fills at the signal bar's close, the whole equity per position
    return Settings.model_validate(
        {"execution": {"maker_fee": fee, "taker_fee": fee, "fill": "close"}}
    )


def test_spans_are_cut_at_session_breaks_and_at_missing_rows():
    assert row_spans(BARS, INDEX) == [(0, 3), (3, 5)]
    assert row_spans(BARS, INDEX[[0, 2, 3, 4]]) == [(0, 1), (2, 3), (3, 5)]


def test_buy_and_hold_is_compounded_per_session_not_across_the_break():
    # fee 0: session 1 earns 110 / 100 - 1 = +10 %, session 2 190 / 200 - 1 = -5 %;
    # compounded 1.10 * 0.95 - 1 = +4.5 %. Held across the break it would be 190 / 100 - 1 = +90 %.
    out = compare_with_buy_and_hold(BARS, BuyAndHold(), row_spans(BARS, INDEX), settings(0.0))
    assert out["buy_and_hold"]["total_return"] == pytest.approx(0.045, abs=1e-12)
    assert (out["sessions"], out["bars"], out["buy_and_hold"]["n_trades"]) == (2, 5, 2)
    assert (out["start"], out["end"]) == (INDEX[0].isoformat(), INDEX[-1].isoformat())


def test_the_returns_are_net_of_fees():
    # fee 0.1 % on the entry (the position is still open at each session's end): 10,000 buys
    # 10,000 / (100 * 1.001) BTC, worth 10,000 * 1.10 / 1.001 at 110: +9.8901 %; session 2:
    # 0.95 / 1.001 - 1 = -5.0949 %; compounded 1.098901 * 0.949051 - 1 = +4.2913 %
    out = compare_with_buy_and_hold(BARS, BuyAndHold(), row_spans(BARS, INDEX), settings(0.001))
    expected = (1.10 / 1.001) * (0.95 / 1.001) - 1.0
    assert out["buy_and_hold"]["total_return"] == pytest.approx(expected, rel=1e-12)
    assert round(expected, 6) == 0.042913
    # each session pays 10,000 / 1.001 * 0.001 = 9.99001 in fees
    assert out["buy_and_hold"]["fees_paid"] == pytest.approx(2 * 10_000 / 1.001 * 0.001)
    assert out["fee"] == 0.001
