"""Bundled datasets: listed with their facts, loadable by name, valid, attributed."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from n1v1.data import DataError, find_gaps, list_datasets, load_bars, load_dataset, validate_bars

# name -> (venue, symbol, timeframe, rows, first day, last day), from the data's README table.
EXPECTED = {
    "coinbase_BTC-USD_1d": ("coinbase", "BTC/USD", "1d", 1318, "2014-12-01", "2018-08-13"),
    "bitfinex_BTC-USD_1h": ("bitfinex", "BTC/USD", "1h", 733, "2013-10-01", "2013-10-31"),
    "binance_BTC-USDT_1h": ("binance", "BTC/USDT", "1h", 120, "2018-05-01", "2018-05-05"),
    "coinbase_BTC-USD_1m": ("coinbase", "BTC/USD", "1m", 12423, "2016-10-07", "2018-04-06"),
    "coinbase_ETH-USD_1m": ("coinbase", "ETH/USD", "1m", 5329, "2017-09-03", "2018-04-05"),
    "coinbase_LTC-USD_1m": ("coinbase", "LTC/USD", "1m", 3887, "2018-04-04", "2018-04-06"),
    "coinbase_BTC-EUR_1m": ("coinbase", "BTC/EUR", "1m", 3663, "2018-04-04", "2018-04-06"),
}


def test_list_datasets_reports_the_seven_files() -> None:
    infos = list_datasets()
    assert [info.name for info in infos] == sorted(EXPECTED)
    for info in infos:
        venue, symbol, timeframe, rows, first_day, last_day = EXPECTED[info.name]
        assert (info.venue, info.symbol, info.timeframe, info.rows) == (
            venue,
            symbol,
            timeframe,
            rows,
        )
        assert info.first.strftime("%Y-%m-%d") == first_day
        assert info.last.strftime("%Y-%m-%d") == last_day
        assert str(info.first.tz) == "UTC"
        assert info.path.name == f"{info.name}.csv"
        assert info.path.is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_dataset_loads_and_validates(name: str) -> None:
    bars = load_dataset(name)
    assert validate_bars(bars) is bars
    assert len(bars) == EXPECTED[name][3]
    assert bars.attrs == {"source": name, "symbol": EXPECTED[name][1]}
    assert bars.index.name == "timestamp"


def test_timeframe_in_the_name_matches_the_data() -> None:
    # The median spacing of each file equals the timeframe its name claims.
    spacing = {
        "1m": pd.Timedelta(minutes=1),
        "1h": pd.Timedelta(hours=1),
        "1d": pd.Timedelta(days=1),
    }
    for info in list_datasets():
        bars = load_dataset(info.name)
        assert pd.Series(bars.index).diff().median() == spacing[info.timeframe]


def test_minute_files_have_real_gaps() -> None:
    gaps = find_gaps(load_dataset("coinbase_BTC-USD_1m"))
    assert len(gaps) > 0
    # The file joins non-adjacent days: at least one hole is longer than a day (1440 minutes).
    assert gaps["missing_bars"].max() > 1440


def test_load_dataset_returns_an_independent_copy() -> None:
    first = load_dataset("binance_BTC-USDT_1h")
    first.iloc[0, 0] = -1.0
    first.attrs["symbol"] = "changed"
    again = load_dataset("binance_BTC-USDT_1h")
    assert again.iloc[0, 0] == 9246.01  # the first open in the file
    assert again.attrs["symbol"] == "BTC/USDT"


def test_unknown_dataset_lists_the_known_names() -> None:
    with pytest.raises(DataError, match="unknown dataset 'coinbase_DOGE-USD_1m'") as info:
        load_dataset("coinbase_DOGE-USD_1m")
    for name in EXPECTED:
        assert name in str(info.value)


def test_load_bars_accepts_a_dataset_name() -> None:
    pd.testing.assert_frame_equal(
        load_bars("coinbase_ETH-USD_1m"), load_dataset("coinbase_ETH-USD_1m")
    )


def test_attribution_ships_beside_the_data() -> None:
    samples = resources.files("n1v1.data").joinpath("samples")
    notice = samples.joinpath("NOTICE").read_text()
    assert "QuantConnect" in notice
    assert "Apache License, Version 2.0" in notice
    readme = samples.joinpath("README.md").read_text()
    assert "Apache License 2.0" in readme
    for name in EXPECTED:
        assert name in readme


def test_bundled_samples_are_the_shared_originals_byte_for_byte(shared_dir):
    """Provenance: the package ships the LEAN-derived files unaltered."""
    from n1v1.data import list_datasets

    datasets = list_datasets()
    assert len(datasets) == 7
    for info in datasets:
        original = shared_dir / "data" / f"{info.name}.csv"
        assert original.is_file(), f"{original} missing"
        assert Path(info.path).read_bytes() == original.read_bytes(), info.name
