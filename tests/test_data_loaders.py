"""Loaders: CSV, Parquet and ccxt into the one bars representation, UTC, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from n1v1.data import (
    COLUMNS,
    DataError,
    from_ccxt,
    load_bars,
    load_csv,
    load_dataset,
    load_parquet,
)

HEADER = "timestamp,open,high,low,close,volume"
# 1704067200 s = 2024-01-01T00:00:00Z (19723 days * 86400 s since the epoch).
JAN1_MS = 1_704_067_200_000


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def assert_bars_layout(bars: pd.DataFrame) -> None:
    assert list(bars.columns) == list(COLUMNS)
    assert all(bars[c].dtype == np.float64 for c in COLUMNS)
    assert isinstance(bars.index, pd.DatetimeIndex)
    assert str(bars.index.tz) == "UTC"
    assert bars.index.name == "timestamp"
    assert bars.index.is_monotonic_increasing and bars.index.is_unique


def test_csv_iso_timestamps_in_any_offset_are_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n"  # Z
        "2024-01-01T01:01:00+01:00,1,2,0.5,1.5,3\n"  # 01:01 at +01:00 is 00:01 UTC
        "2023-12-31T19:02:00-05:00,1,2,0.5,1.5,3\n"  # 19:02 at -05:00 is 00:02 UTC next day
        "2024-01-01 00:03:00,1,2,0.5,1.5,3\n",  # naive: taken as UTC
    )
    bars = load_csv(path)
    assert_bars_layout(bars)
    assert bars.index.tolist() == [utc(f"2024-01-01 00:0{m}") for m in range(4)]
    assert bars.attrs["source"] == str(path)
    assert "symbol" not in bars.attrs


def test_csv_epoch_milliseconds(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n{JAN1_MS},1,2,0.5,1.5,3\n{JAN1_MS + 60_000},1.5,2,1,1.2,4\n")
    bars = load_csv(path, symbol="BTC/USD")
    assert bars.index.tolist() == [utc("2024-01-01 00:00"), utc("2024-01-01 00:01")]
    assert bars.attrs["symbol"] == "BTC/USD"
    assert bars["close"].tolist() == [1.5, 1.2]
    assert bars["volume"].tolist() == [3.0, 4.0]


def test_csv_epoch_seconds_are_rejected_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n1704067200,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError, match=r"bars.csv:2: field 'timestamp'.*epoch seconds"):
        load_csv(path)


def test_csv_epoch_microseconds_are_rejected_with_a_hint(tmp_path: Path) -> None:
    # 1704067200000000 is 2024-01-01 in microseconds: as milliseconds it would be year 55970,
    # beyond the last time pandas can hold (2262-04-11), so it cannot be epoch ms.
    path = write(tmp_path, f"{HEADER}\n{JAN1_MS * 1000},1,2,0.5,1.5,3\n")
    with pytest.raises(DataError) as info:
        load_csv(path)
    assert str(info.value) == (
        f"{path}:2: field 'timestamp': 1704067200000000 is after 2262 as epoch milliseconds; "
        "integer timestamps must be epoch ms (epoch microseconds? divide by 1000)"
    )


def test_header_is_case_and_space_insensitive(tmp_path: Path) -> None:
    path = write(tmp_path, "Timestamp, Open,HIGH,low ,Close,Volume\n2024-01-01,1,2,0.5,1.5,3\n")
    assert load_csv(path)["high"].tolist() == [2.0]


def test_symbol_is_read_from_bundled_style_file_names(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n2024-01-01,1,2,0.5,1.5,3\n", "kraken_ETH-EUR_1h.csv")
    assert load_csv(path).attrs["symbol"] == "ETH/EUR"
    assert load_csv(path, symbol="ETH/EURx").attrs["symbol"] == "ETH/EURx"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "bars.csv"
    with pytest.raises(DataError, match="does not exist") as info:
        load_csv(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        load_parquet(tmp_path / "bars.parquet")


def test_missing_column_is_named_with_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match="missing column 'volume'") as info:
        load_csv(path)
    assert str(path) in str(info.value)
    assert info.value.field == "volume"


def test_misspelled_column_gets_a_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,open,high,low,clsoe,volume\n2024-01-01,1,2,0.5,1.5,3\n")
    with pytest.raises(DataError) as info:
        load_csv(path)
    message = str(info.value)
    assert str(path) in message
    assert "unexpected column 'clsoe' (did you mean 'close'?)" in message
    assert "missing column 'close'" in message


def test_extra_column_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER},trades\n2024-01-01,1,2,0.5,1.5,3,7\n")
    with pytest.raises(DataError, match="unexpected column 'trades'"):
        load_csv(path)


def test_unparseable_cells_name_row_and_field(tmp_path: Path) -> None:
    good = "2024-01-01T00:00:00Z,1,2,0.5,1.5,3"
    path = write(tmp_path, f"{HEADER}\n{good}\n2024-01-01T00:01:00Z,1,2,abc,1.5,3\n")
    with pytest.raises(DataError, match=r"bars.csv:3: field 'low': cannot parse 'abc'"):
        load_csv(path)
    path = write(tmp_path, f"{HEADER}\n{good}\nyesterday,1,2,0.5,1.5,3\n", "t.csv")
    with pytest.raises(DataError, match=r"t.csv:3: field 'timestamp': cannot parse 'yesterday'"):
        load_csv(path)
    path = write(tmp_path, f"{HEADER}\n{good}\n,1,2,0.5,1.5,3\n", "m.csv")
    with pytest.raises(DataError, match=r"m.csv:3: field 'timestamp': timestamp is missing$"):
        load_csv(path)


def test_empty_file_and_header_only_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file is empty"):
        load_csv(write(tmp_path, ""))
    bars = load_csv(write(tmp_path, f"{HEADER}\n", "header.csv"))
    assert len(bars) == 0
    assert_bars_layout(bars)


def test_csv_round_trip(tmp_path: Path) -> None:
    original = load_dataset("binance_BTC-USDT_1h")
    path = tmp_path / "copy.csv"
    original.to_csv(path)  # writes ISO times with +00:00
    again = load_csv(path)
    pd.testing.assert_frame_equal(again, original)


def test_parquet_round_trip_with_index(tmp_path: Path) -> None:
    original = load_dataset("coinbase_LTC-USD_1m")
    path = tmp_path / "ltc.parquet"
    original.to_parquet(path)
    again = load_parquet(path, symbol="LTC/USD")
    pd.testing.assert_frame_equal(again, original)
    assert again.attrs == {"source": str(path), "symbol": "LTC/USD"}


@pytest.mark.parametrize(
    "timestamps",
    [
        pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:01"]),  # naive datetimes = UTC
        pd.to_datetime(["2024-01-01 01:00", "2024-01-01 01:01"]).tz_localize("Europe/Paris"),
        [JAN1_MS, JAN1_MS + 60_000],
        ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"],
    ],
    ids=["naive", "paris", "epoch-ms", "iso-strings"],
)
def test_parquet_timestamp_column_kinds(tmp_path: Path, timestamps: object) -> None:
    table = pd.DataFrame(
        {
            "timestamp": timestamps,
            "open": [1.0, 1.5],
            "high": [2.0, 2.0],
            "low": [0.5, 1.0],
            "close": [1.5, 1.2],
            "volume": [3, 4],  # integers become float64
        }
    )
    path = tmp_path / "t.parquet"
    table.to_parquet(path, index=False)
    bars = load_parquet(path)
    assert_bars_layout(bars)
    # 01:00 in Paris in January (+01:00) is 00:00 UTC.
    assert bars.index.tolist() == [utc("2024-01-01 00:00"), utc("2024-01-01 00:01")]


def test_parquet_bad_column_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"timestamp": [JAN1_MS], "open": [1.0], "hi": [2.0]}).to_parquet(path)
    with pytest.raises(DataError, match="unexpected column 'hi'") as info:
        load_parquet(path)
    assert str(path) in str(info.value)


def test_unreadable_parquet(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_parquet(write(tmp_path, "not parquet", "x.parquet"))


def test_ccxt_round_trip() -> None:
    rows = [
        [JAN1_MS, 100.0, 101.0, 99.0, 100.5, 12.5],
        [JAN1_MS + 60_000, 100.5, 102.0, 100.0, 101.0, 3],
        [JAN1_MS + 120_000, 101, 101.5, 100.5, 101.2, 0],
    ]
    bars = from_ccxt(rows, symbol="BTC/USDT")
    assert_bars_layout(bars)
    assert bars.index.tolist() == [utc(f"2024-01-01 00:0{m}") for m in range(3)]
    assert bars.attrs == {"source": "ccxt:BTC/USDT", "symbol": "BTC/USDT"}
    back = [
        [ts.value // 1_000_000, *values]
        for ts, values in zip(bars.index, bars.to_numpy().tolist(), strict=True)
    ]
    assert back == [[float(x) if i else x for i, x in enumerate(row)] for row in rows]


def test_ccxt_bad_rows() -> None:
    with pytest.raises(DataError, match=r"^ccxt: row index 1 \(0-based\): expected \[timestamp_ms"):
        from_ccxt([[JAN1_MS, 1, 2, 0.5, 1.5, 3], [JAN1_MS + 60_000, 1, 2, 0.5, 1.5]])
    with pytest.raises(DataError, match=r"row index 0 \(0-based, .*field 'volume': value is NaN"):
        from_ccxt([[JAN1_MS, 1, 2, 0.5, 1.5, None]])
    assert len(from_ccxt([])) == 0


def test_load_bars_dispatches_on_path_or_dataset(tmp_path: Path) -> None:
    original = load_dataset("binance_BTC-USDT_1h")
    csv_path = tmp_path / "b.csv"
    original.to_csv(csv_path)
    parquet_path = tmp_path / "b.parquet"
    original.to_parquet(parquet_path)
    for source in (csv_path, str(csv_path), parquet_path):
        pd.testing.assert_frame_equal(load_bars(source), original)
    by_name = load_bars("binance_BTC-USDT_1h")
    pd.testing.assert_frame_equal(by_name, original)
    assert by_name.attrs == {"source": "binance_BTC-USDT_1h", "symbol": "BTC/USDT"}
    assert load_bars("binance_BTC-USDT_1h", symbol="BTCUSDT").attrs["symbol"] == "BTCUSDT"


def test_load_bars_unknown_source_lists_datasets(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"not a bundled dataset; known datasets: .*coinbase_BTC-USD_1m"
    ):
        load_bars("coinbase_BTC-USD_5m")
    with pytest.raises(DataError, match="does not exist"):
        load_bars(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=r"unsupported file type '\.txt'"):
        load_bars(write(tmp_path, "x", "bars.txt"))


def test_load_bars_applies_gap_policy(tmp_path: Path) -> None:
    # 00:00, 00:01, 00:02 then 00:04: one missing bar (00:03), filled at the previous close 1.3.
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "2024-01-01T00:00:00Z,1.0,1.1,0.9,1.1,1\n"
        "2024-01-01T00:01:00Z,1.1,1.2,1.0,1.2,1\n"
        "2024-01-01T00:02:00Z,1.2,1.3,1.1,1.3,1\n"
        "2024-01-01T00:04:00Z,1.3,1.5,1.3,1.4,1\n",
    )
    assert len(load_bars(path)) == 4
    filled = load_bars(path, gap_policy="fill")
    assert len(filled) == 5
    assert filled.loc[utc("2024-01-01 00:03")].tolist() == [1.3, 1.3, 1.3, 1.3, 0.0]
    assert len(load_bars(path, gap_policy="fill", max_fill_bars=0)) == 4
