"""`n1v1 data download` end to end: the real CLI and the real ccxt client against a local Binance.

The exchange is `tests.exchange_server.FakeBinance` on a free 127.0.0.1 port, reached through the
command's own ``--base-url`` (so `make_exchange` points every API section of ccxt's binance at
it). `Binance` below adds what a download needs from it: the query of every request (to see where
each kline request started), the empty USDⓈ-M / COIN-M futures exchangeInfo that ccxt's default
``load_markets`` also asks for, and a switch that fails every kline request from the N-th on.

Bars are hourly from 2024-01-01 unless a test needs the forming bar (daily bars ending today: a
bar forming now cannot close during the test). Expected files are built by hand from the bars
put on the server: bar i is open 100 + i, high 101 + i, low 99 + i, close 100.5 + i, volume 1 + i.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import ccxt
import pandas as pd
import pytest
from exchange_server import EXCHANGE_INFO, KLINES, FakeBinance
from fake_binance.server import FUTURES_INFO, Reply

from n1v1.cli import main
from n1v1.data import DataError, load_bars
from n1v1.data.bar_file import BarFile
from n1v1.live.download import Retry, download_bars
from n1v1.live.exchange import ExchangeSetupError, make_exchange, rebase_urls, scrub

ROOT = Path(__file__).resolve().parent.parent
T0 = pd.Timestamp("2024-01-01", tz="UTC")
T0_MS = 1_704_067_200_000
HOUR = pd.Timedelta(hours=1)
HOUR_MS = 3_600_000
SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}}  # ccxt option: load spot markets alone
BTC_FILE = "binance_BTC-USDT_1h.csv"


class Binance(FakeBinance):
    """FakeBinance that records queries, lists no futures markets, and can start failing."""

    def __init__(self, markets: list[tuple[str, str, str]]) -> None:
        super().__init__(markets)
        self.queries: list[tuple[str, dict[str, str]]] = []
        self.fail_klines_from: int | None = None  # 1-based kline request number

    def handle(self, method: str, target: str, body: str, api_key: str | None) -> Reply:
        parts = urlsplit(target)
        self.queries.append((parts.path, dict(parse_qsl(parts.query))))
        failing = self.fail_klines_from
        if parts.path == KLINES and failing is not None and len(self.kline_starts()) >= failing:
            return Reply(500, '{"code":-1000,"msg":"An unknown error occurred"}')
        return super().handle(method, target, body, api_key)

    def kline_starts(self, market_id: str = "BTCUSDT") -> list[int]:
        """The startTime of every kline request for the market, in order."""
        return [
            int(q["startTime"])
            for p, q in self.queries
            if p == KLINES and q.get("symbol") == market_id
        ]


def ohlcv(i: int) -> tuple[float, float, float, float, float]:
    return (100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1.0 + i)


def expected(start: pd.Timestamp, step: pd.Timedelta, first: int, n: int) -> pd.DataFrame:
    """The bars frame a file of bars ``first .. first + n - 1`` must load as, by hand."""
    rows = [ohlcv(i) for i in range(first, first + n)]
    index = pd.DatetimeIndex(
        [start + i * step for i in range(first, first + n)], name="timestamp"
    ).as_unit("us")
    return pd.DataFrame(rows, index=index, columns=["open", "high", "low", "close", "volume"])


@pytest.fixture
def exchange() -> Iterator[Binance]:
    server = Binance([("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT")]).start()
    yield server
    server.close()


def download(
    capsys: pytest.CaptureFixture[str], server: Binance, *args: str, **options: str
) -> tuple[int, str, str]:
    """`n1v1 data download` in-process; ``options`` override the defaults below."""
    settings = {
        "exchange": "binance",
        "symbols": "BTC/USDT",
        "timeframe": "1h",
        "since": "2024-01-01",
        "base-url": server.url,
        "retry-wait": "0.01",
        **options,
    }
    argv = ["data", "download", *args]
    for key, value in settings.items():
        argv += [f"--{key}", value]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("n1v1: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# -- downloading -----------------------------------------------------------------------------------
def test_a_multi_page_download_equals_the_exchanges_bars(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(2600)])
    exchange.put_bars("ETHUSDT", "1h", T0_MS + 5 * HOUR_MS, [ohlcv(i) for i in range(5, 1205)])

    code, out, err = download(capsys, exchange, symbols="BTC/USDT,ETH/USDT", output=str(tmp_path))

    assert code == 0, err
    btc = load_bars(tmp_path / BTC_FILE)
    pd.testing.assert_frame_equal(btc, expected(T0, HOUR, 0, 2600), check_freq=False)
    assert btc.attrs["symbol"] == "BTC/USDT"  # from the file name, like a bundled dataset
    eth = load_bars(tmp_path / "binance_ETH-USDT_1h.csv")
    pd.testing.assert_frame_equal(eth, expected(T0, HOUR, 5, 1200), check_freq=False)
    # Binance serves at most 1,000 bars a request: pages start at bars 0, 1000, 2000, then one
    # more request just after the last bar finds nothing newer.
    starts = [T0_MS, T0_MS + 1000 * HOUR_MS - HOUR_MS + 1, T0_MS + 2000 * HOUR_MS - HOUR_MS + 1]
    assert exchange.kline_starts() == [*starts, T0_MS + 2599 * HOUR_MS + 1]
    assert exchange.paths() == {EXCHANGE_INFO, *FUTURES_INFO, KLINES}
    assert out.splitlines() == [
        f"BTC/USDT: 2,600 bars written; {tmp_path / BTC_FILE} holds 2,600, "
        "2024-01-01 00:00 to 2024-04-18 07:00 UTC; gaps: none",
        f"ETH/USDT: 1,200 bars written; {tmp_path / 'binance_ETH-USDT_1h.csv'} holds 1,200, "
        "2024-01-01 05:00 to 2024-02-20 04:00 UTC; gaps: none",
    ]
    assert err == ""  # not a terminal: no progress bar


def test_a_rerun_asks_only_from_the_last_bar_on_and_appends(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(100)])
    assert download(capsys, exchange, output=str(tmp_path))[0] == 0
    path = tmp_path / BTC_FILE
    before = path.read_bytes()

    exchange.put_bars("BTCUSDT", "1h", T0_MS + 100 * HOUR_MS, [ohlcv(i) for i in range(100, 150)])
    exchange.queries.clear()
    code, out, err = download(capsys, exchange, output=str(tmp_path))

    assert code == 0, err
    last_stored_ms = T0_MS + 99 * HOUR_MS
    assert exchange.kline_starts() == [last_stored_ms + 1, T0_MS + 149 * HOUR_MS + 1]
    assert path.read_bytes().startswith(before)  # the stored rows are not rewritten
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 150), check_freq=False)
    assert out.startswith("BTC/USDT: 50 bars written;")

    exchange.queries.clear()  # nothing new: one request, from after the last bar, and no change
    code, out, _ = download(capsys, exchange, output=str(tmp_path))
    assert code == 0
    assert exchange.kline_starts() == [T0_MS + 149 * HOUR_MS + 1]
    assert out.startswith("BTC/USDT: 0 bars written;")
    assert len(load_bars(path)) == 150


def test_the_forming_bar_is_never_stored(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    today = pd.Timestamp.now(tz="UTC").floor("D")  # today's daily bar is forming
    first = today - pd.Timedelta(days=4)
    first_ms = int(first.value // 1_000_000)
    exchange.put_bars("BTCUSDT", "1d", first_ms, [ohlcv(i) for i in range(5)])

    code, out, err = download(
        capsys, exchange, timeframe="1d", since=first.isoformat(), output=str(tmp_path)
    )

    assert code == 0, err
    bars = load_bars(tmp_path / "binance_BTC-USDT_1d.csv")
    day = pd.Timedelta(days=1)
    pd.testing.assert_frame_equal(bars, expected(first, day, 0, 4), check_freq=False)
    assert bars.index[-1] == today - day
    assert out.startswith("BTC/USDT: 4 bars written;")


def test_until_stops_before_its_time(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(2600)])
    path = tmp_path / "btc.parquet"
    code, _, err = download(
        capsys, exchange, since="2024-01-01T10:00", until="2024-01-02", output=str(path)
    )
    assert code == 0, err
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 10, 14), check_freq=False)


def test_server_errors_and_rate_limits_are_retried(
    exchange: Binance,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(1500)])
    exchange.fail_next(EXCHANGE_INFO, 503, "<html>Service Unavailable</html>", "text/html")
    exchange.fail_next(KLINES, 500, '{"code":-1000,"msg":"An unknown error occurred"}')
    exchange.fail_next(KLINES, 429, '{"code":-1003,"msg":"Too many requests"}')

    with caplog.at_level(logging.WARNING, logger="n1v1.live.download"):
        code, _, err = download(capsys, exchange, output=str(tmp_path))

    assert code == 0, err
    pd.testing.assert_frame_equal(
        load_bars(tmp_path / BTC_FILE), expected(T0, HOUR, 0, 1500), check_freq=False
    )
    # Two failed requests from T0, then the pages: from T0, after bar 999, after bar 1499.
    assert exchange.kline_starts()[:3] == [T0_MS, T0_MS, T0_MS]
    assert len(exchange.kline_starts()) == 5
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3
    assert "binance: loading the markets failed (ExchangeNotAvailable" in warned[0]
    assert "binance BTC/USDT: fetching bars from 2024-01-01T00:00:00Z failed" in warned[1]
    assert "429 Too Many Requests" in warned[2] and "retry 2 of 5 in 0.02 s" in warned[2]


def test_after_the_last_retry_the_error_names_exchange_symbol_and_time_and_keeps_the_bars(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(2600)])
    exchange.fail_klines_from = 2  # the first page (bars 0-999) arrives, then only 500s

    code, _, err = download(capsys, exchange, "--retries", "2", output=str(tmp_path))

    assert_user_error(
        code,
        err,
        "binance BTC/USDT: fetching bars from 2024-02-11T16:00:00Z failed 3 times in a row",
        'OperationFailed: binance {"code":-1000',
        "run the command again to resume",
    )
    path = tmp_path / BTC_FILE  # the page fetched before the failures is stored, valid
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 1000), check_freq=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left

    exchange.fail_klines_from = None
    exchange.queries.clear()
    code, out, err = download(capsys, exchange, output=str(tmp_path))
    assert code == 0, err
    assert exchange.kline_starts()[0] == T0_MS + 999 * HOUR_MS + 1
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 2600), check_freq=False)
    assert out.startswith("BTC/USDT: 1,600 bars written;")


def test_gaps_on_the_exchange_are_reported_not_filled(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(10)])
    exchange.put_bars("BTCUSDT", "1h", T0_MS + 13 * HOUR_MS, [ohlcv(i) for i in range(13, 20)])
    code, out, err = download(capsys, exchange, output=str(tmp_path))
    assert code == 0, err
    assert len(load_bars(tmp_path / BTC_FILE)) == 17
    assert out.rstrip().endswith("gaps: 1 hole, 3 missing bars")


def test_ctrl_c_mid_download_keeps_the_pages_fetched(exchange: Binance, tmp_path: Path) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(2600)])
    client = make_exchange("binance", base_url=exchange.url, options=SPOT_ONLY)
    file = BarFile(tmp_path / "btc.csv", "csv")

    def interrupt(done: int, total: int) -> None:
        if done >= 2000:
            raise KeyboardInterrupt  # as Ctrl-C would, between two pages

    with pytest.raises(KeyboardInterrupt):
        download_bars(
            client, "BTC/USDT", "1h", file, since=T0, retry=Retry(0, 0), progress=interrupt
        )
    bars = load_bars(tmp_path / "btc.csv")
    pd.testing.assert_frame_equal(bars, expected(T0, HOUR, 0, 2000), check_freq=False)


def test_an_append_the_strict_loader_refuses_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "btc.parquet"
    file = BarFile(path, "parquet")
    file.append(expected(T0, HOUR, 0, 3))
    before = path.read_bytes()
    with pytest.raises(
        DataError, match=r"btc.parquet with the new bars: row index 3 .* duplicates"
    ):
        file.append(expected(T0, HOUR, 2, 2))  # bar 2 is stored already
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["btc.parquet"]  # no temporary left
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 3), check_freq=False)


# -- the files work everywhere a dataset does ------------------------------------------------------
@pytest.mark.parametrize("name", ["btc.csv", "btc.parquet"])
def test_csv_and_parquet_load_strictly_validate_backtest_and_resume(
    name: str, exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(300)])
    path = tmp_path / name
    assert download(capsys, exchange, until="2024-01-06", output=str(path))[0] == 0
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 120), check_freq=False)
    assert download(capsys, exchange, output=str(path))[0] == 0
    pd.testing.assert_frame_equal(load_bars(path), expected(T0, HOUR, 0, 300), check_freq=False)

    assert main(["data", "validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: valid\n{path}: unknown symbol, 300 bars")
    code = main(["backtest", "--data", str(path), "--strategy", "buy_and_hold", "--no-progress"])
    assert code == 0
    assert "2024-01-01 00:00 to 2024-01-13 11:00 UTC" in capsys.readouterr().out


def test_the_other_format_in_a_directory(
    exchange: Binance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(30)])
    code, _, err = download(capsys, exchange, "--format", "parquet", output=str(tmp_path))
    assert code == 0, err
    bars = load_bars(tmp_path / "binance_BTC-USDT_1h.parquet")
    pd.testing.assert_frame_equal(bars, expected(T0, HOUR, 0, 30), check_freq=False)
    assert bars.attrs["symbol"] == "BTC/USDT"


def test_python_dash_m_as_a_user_runs_it(exchange: Binance, tmp_path: Path) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(1200)])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "n1v1", "data", "download", "--exchange", "binance"]
    argv += ["--symbols", "BTC/USDT", "--timeframe", "1h", "--since", "2024-01-01"]
    argv += ["--output", str(tmp_path), "--base-url", exchange.url]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # stderr is a pipe: no progress bar lines
    assert proc.stdout.startswith("BTC/USDT: 1,200 bars written;")
    pd.testing.assert_frame_equal(
        load_bars(tmp_path / BTC_FILE), expected(T0, HOUR, 0, 1200), check_freq=False
    )

    proc = subprocess.run(
        [*argv[:-2], "--base-url", "ftp://nowhere"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("n1v1: error: --base-url 'ftp://nowhere': expected http(s)://")


# -- bad input: the option is named, exit code 2, nothing stored is lost ---------------------------
BAD_OPTIONS: list[tuple[dict[str, str], tuple[str, ...]]] = [
    ({"exchange": "binanse"}, ("--exchange 'binanse': not an exchange", "did you mean binance")),
    ({"symbols": "BTC/USDX"}, ("--symbols 'BTC/USDX': binance has no such market", "BTC/USDT")),
    ({"symbols": "BTC/USDT,,ETH/USDT"}, ("--symbols", "an empty name")),
    ({"symbols": "BTC/USDT,BTC/USDT"}, ("--symbols: 'BTC/USDT' is listed more than once",)),
    ({"timeframe": "7m"}, ("--timeframe '7m': binance offers 1s, 1m, 3m",)),
    ({"timeframe": "1w"}, ("--timeframe: ", "'1w'")),
    ({"since": "yesterday-ish"}, ("--since 'yesterday-ish': not a time",)),
    ({"since": "2024-02-01", "until": "2024-01-01"}, ("--since '2024-02-01' is not before",)),
    ({"since": "2999-01-01"}, ("--since '2999-01-01'", "is not in the past")),
    ({"until": "soon"}, ("--until 'soon': not a time",)),
    ({"output": "{tmp}/missing/btc.csv"}, ("--output", "missing' does not exist")),
    ({"output": "{tmp}/missing"}, ("--output", "no such directory")),
    ({"output": "{tmp}/x.csv", "symbols": "BTC/USDT,ETH/USDT"}, ("--output", "one symbol")),
    ({"output": "{tmp}/x.csv", "format": "parquet"}, ("--format parquet", "is a csv file")),
    ({"output": "{tmp}/kept.csv"}, ("--output", "holds bars 1m apart, not --timeframe 1h")),
    ({"output": "{tmp}/binance_ETH-USDT_1h.csv"}, ("--output", "holds ETH/USDT bars")),
    ({"output": "{tmp}/broken.csv"}, ("--output", "not a valid bars file", "broken.csv:3")),
    ({"base-url": "localhost:8080"}, ("--base-url 'localhost:8080': expected http(s)://",)),
    ({"exchange": "bitfinex", "sandbox": ""}, ("--sandbox: ccxt", "no sandbox", "bitfinex")),
    ({"retries": "-1"}, ("--retries -1: must be 0 or more",)),
    ({"timeout": "0"}, ("--timeout 0.0: must be",)),
]


@pytest.mark.parametrize(
    ("options", "fragments"), BAD_OPTIONS, ids=[next(iter(o)) for o, _ in BAD_OPTIONS]
)
def test_bad_input_names_the_option_and_changes_nothing(
    options: dict[str, str],
    fragments: tuple[str, ...],
    exchange: Binance,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    exchange.put_bars("BTCUSDT", "1h", T0_MS, [ohlcv(i) for i in range(10)])
    header = "timestamp,open,high,low,close,volume\n"
    stored = {
        "kept.csv": header + "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n2024-01-01T00:01:00Z,1,2,1,1,1\n",
        "binance_ETH-USDT_1h.csv": header + "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n",
        "broken.csv": header
        + "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n2024-01-01T01:00:00Z,1,2,x,1,1\n",
        BTC_FILE: header + "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n",
    }
    for name, text in stored.items():
        (tmp_path / name).write_text(text)
    opts: dict[str, Any] = {"output": str(tmp_path), **options}
    opts = {k: v.replace("{tmp}", str(tmp_path)) for k, v in opts.items()}
    flags = [f"--{k}" for k, v in opts.items() if v == ""]
    values = {k: v for k, v in opts.items() if v != ""}

    code, out, err = download(capsys, exchange, *flags, **values)

    assert_user_error(code, err, *fragments)
    assert out == ""
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == stored


# -- make_exchange -------------------------------------------------------------------------------
def test_make_exchange_rate_limits_and_rebases_every_api_section() -> None:
    exchange = make_exchange("binance", base_url="http://127.0.0.1:9/proxy/", timeout_ms=2500)
    assert exchange.enableRateLimit is True
    assert exchange.timeout == 2500
    api = exchange.urls["api"]
    assert len(api) > 10  # spot, margin, futures, options, portfolio margin, ...
    assert api["public"] == "http://127.0.0.1:9/proxy/api/v3"
    assert api["fapiPublic"] == "http://127.0.0.1:9/proxy/fapi/v1"
    assert all(url.startswith("http://127.0.0.1:9/proxy/") for url in api.values())
    nested = {"spot": {"public": "https://api.{hostname}/v5", "private": "wss://x.y/ws"}}
    assert rebase_urls(nested, "http://h:1") == {
        "spot": {"public": "http://h:1/v5", "private": "http://h:1/ws"}
    }


def test_make_exchange_switches_to_the_sandbox_before_any_market_is_loaded() -> None:
    testnet = ccxt.binance().urls["test"]
    exchange = make_exchange("binance", sandbox=True)
    assert exchange.isSandboxModeEnabled
    assert exchange.markets is None
    assert exchange.urls["api"]["public"] == testnet["public"]
    with pytest.raises(ExchangeSetupError, match=r"sandbox: ccxt .* no sandbox .* kraken"):
        make_exchange("kraken", sandbox=True)


def test_credentials_are_set_but_never_shown() -> None:
    secret = "s3cr3t-value-123"
    exchange = make_exchange("binance", credentials={"apiKey": "key-abc", "secret": secret})
    assert (exchange.apiKey, exchange.secret) == ("key-abc", secret)
    text = f"binance GET https://x/api?signature=1&apiKey=key-abc&s={secret}"
    assert scrub(text, exchange) == "binance GET https://x/api?signature=1&apiKey=***&s=***"
    with pytest.raises(ExchangeSetupError) as info:
        make_exchange("binance", credentials={"apikey": secret})
    assert "'apikey'" in str(info.value) and "did you mean 'apiKey'" in str(info.value)
    assert secret not in str(info.value)
