"""`BacktestResult.write_json` (the array-speed writer) against the plain `json.dumps` format.

The writer formats timestamps with array arithmetic and interleaves them with orjson's numbers;
these tests read its file back and compare every value with the format it replaced (per-bar
`Timestamp.isoformat()` and `json.dumps` of Python floats), exactly, not only to the cent.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from n1v1.backtest import result_json
from n1v1.backtest.result_json import equity_json_chunks, iso_strings
from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data import generate_bars, load_market
from n1v1.strategies import create_strategy


def _old_format(result) -> dict:
    """What write_json wrote before: json.dumps of these lists, one isoformat per bar."""
    return {
        "metrics": result.metrics,
        "trades": [t.to_dict() for t in result.trades],
        "equity": [
            [ts.isoformat(), float(v)]
            for ts, v in zip(result.equity.index, result.equity.to_numpy(), strict=True)
        ],
    }


@pytest.mark.parametrize("gaps", ["refuse", "segment"])
def test_json_file_matches_the_old_format_value_for_value(tmp_path, gaps):
    settings = Settings.model_validate(
        {"data": {"timeframe": "5m"}, "risk": {"stop_loss_pct": 0.02}, "backtest": {"gaps": gaps}}
    )
    bars = load_market("coinbase_BTC-USD_1m", timeframe="5m")  # four long gaps
    result = run_backtest(bars, create_strategy("sma_cross", {"fast": 5, "slow": 20}), settings)
    path = result.write_json(tmp_path / "run.json")
    new = json.loads(path.read_text())
    old = json.loads(json.dumps(_old_format(result), allow_nan=False))
    # what the file says is also what to_dict() says
    assert new == json.loads(json.dumps(result.to_dict()))

    assert new["equity"] == old["equity"]  # same timestamps, the same float64 values
    assert new["metrics"] == old["metrics"]
    assert len(new["trades"]) == len(old["trades"]) == len(result.trades)
    for got, want in zip(new["trades"], old["trades"], strict=True):
        extra = {k: got.pop(k) for k in ("duration_seconds", "spans_gap")}
        assert got == want
        if want["exit_time"] is not None:
            span = pd.Timestamp(want["exit_time"]) - pd.Timestamp(want["entry_time"])
            assert extra["duration_seconds"] == span.total_seconds()
    assert new["meta"]["gap_policy"] == gaps and len(new["meta"]["gaps"]) == 4


def test_equity_values_round_trip_exactly_including_awkward_floats():
    index = pd.date_range("2024-01-01", periods=9, freq="min", tz="UTC")
    values = np.array([1e-5, 1e16, 123.0, 0.1, 5e-324, 1.7976931348623157e308, -0.0, 2.5, 1 / 3])
    text = b"".join(equity_json_chunks(index, values)).decode()
    back = json.loads(text)
    assert [v for _, v in back] == values.tolist()
    assert [t for t, _ in back] == [ts.isoformat() for ts in index]
    assert json.loads(b"".join(equity_json_chunks(index[:0], values[:0]))) == []


def test_non_finite_equity_is_refused():
    index = pd.date_range("2024-01-01", periods=2, freq="min", tz="UTC")
    with pytest.raises(ValueError, match="non-finite"):
        b"".join(equity_json_chunks(index, np.array([1.0, np.nan])))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_iso_strings_equal_pandas_isoformat(unit):
    stamps = [
        "1677-09-22 00:12:44",  # near the earliest ns Timestamp
        "1900-02-28 23:59:59",  # not a leap year
        "1969-12-31 23:59:59",  # before the epoch: floor division
        "1970-01-01",
        "2000-02-29 12:00:00",  # a leap day of a century leap year
        "2024-12-31 23:59:59",
        "2262-04-11 23:47:16",  # near the latest ns Timestamp
    ]
    index = pd.DatetimeIndex(stamps, tz="UTC").as_unit(unit)
    assert iso_strings(index) == [ts.isoformat() for ts in index]
    # random whole seconds over the whole range
    rng = np.random.default_rng(3)
    seconds = np.sort(rng.integers(-(2**33), 2**33, 5_000))
    index = pd.DatetimeIndex(seconds * 10**9, tz="UTC").as_unit(unit)
    assert iso_strings(index) == [ts.isoformat() for ts in index]


def test_iso_strings_fall_back_to_pandas_for_fractions_and_other_zones():
    fractions = pd.DatetimeIndex(["2024-01-01 00:00:00.5", "2024-01-01 00:00:01"], tz="UTC")
    assert iso_strings(fractions) == [ts.isoformat() for ts in fractions]
    assert iso_strings(fractions)[0] == "2024-01-01T00:00:00.500000+00:00"
    naive = pd.date_range("2024-01-01", periods=2, freq="h")
    assert iso_strings(naive) == ["2024-01-01T00:00:00", "2024-01-01T01:00:00"]
    paris = pd.date_range("2024-01-01", periods=2, freq="h", tz="Europe/Paris")
    assert iso_strings(paris) == [ts.isoformat() for ts in paris]


def test_a_large_curve_crosses_chunk_boundaries_intact(tmp_path):
    rows = result_json._CHUNK_ROWS
    bars = generate_bars(2 * rows + 17, timeframe="1m", seed=1)  # three pieces, the last short
    result = run_backtest(bars, create_strategy("buy_and_hold"), Settings())
    new = json.loads(result.write_json(tmp_path / "big.json").read_text())
    assert len(new["equity"]) == len(bars)
    assert [v for _, v in new["equity"]] == result.equity.to_numpy().tolist()
    sample = [0, rows - 1, rows, 2 * rows, len(bars) - 1]
    assert [new["equity"][i][0] for i in sample] == [bars.index[i].isoformat() for i in sample]
