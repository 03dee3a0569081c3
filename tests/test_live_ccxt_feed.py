"""CcxtBarFeed against a local fake of Binance's public REST API, through real ccxt.

The exchange is `tests.exchange_server.FakeBinance` on a free 127.0.0.1 port; the feed's clock is a
hand-moved `Clock`, so "which bars are closed" is decided by the test, never by wall time. Every
`next_step(0)` polls once (poll_seconds=0), so no test sleeps.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator

import pandas as pd
import pytest
from exchange_server import EXCHANGE_INFO, KLINES, FakeBinance, local_binance

from n1v1.live.ccxt_feed import CcxtBarFeed, Step
from n1v1.live.session import feed_description

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
T0_MS = 1_704_067_200_000  # T0 in epoch ms
MINUTE = pd.Timedelta(minutes=1)
MINUTE_MS = 60_000


class Clock:
    """The feed's "now", moved by the test."""

    def __init__(self, now: pd.Timestamp) -> None:
        self.now = now

    def __call__(self) -> pd.Timestamp:
        return self.now


def ohlcv(i: int) -> tuple[float, float, float, float, float]:
    """A valid bar whose numbers identify it: open 100 + i, close 100.5 + i, volume 1 + i."""
    return (100.0 + i, 101.0 + i, 99.0 + i, 100.5 + i, 1.0 + i)


def minute(i: int) -> pd.Timestamp:
    return T0 + i * MINUTE


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    server = FakeBinance([("BTCUSDT", "BTC", "USDT"), ("ETHUSDT", "ETH", "USDT")]).start()
    yield server
    server.close()


def feed_for(
    exchange: FakeBinance, clock: Clock, symbols: tuple[str, ...] = ("BTC/USDT",), **options: float
) -> CcxtBarFeed:
    return CcxtBarFeed(
        "binance",
        list(symbols),
        "1m",
        exchange=local_binance(exchange.url),
        clock=clock,
        poll_seconds=0.0,
        **options,  # type: ignore[arg-type]
    )


def drain(feed: CcxtBarFeed, most: int = 5000) -> list[Step]:
    """Every step the feed has ready now, up to the first None."""
    steps = []
    for _ in range(most):
        step = feed.next_step(0)
        if step is None:
            return steps
        steps.append(step)
    raise AssertionError(f"feed still had steps after {most}")


def times(steps: list[Step]) -> list[pd.Timestamp]:
    return [ts for ts, _ in steps]


def test_the_forming_bar_is_held_back_until_it_closes(exchange: FakeBinance) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(i) for i in range(5)])
    clock = Clock(minute(4) + pd.Timedelta(seconds=30))  # bar 4 is half-way through its minute
    feed = feed_for(exchange, clock)
    feed.resume_after(minute(-1))

    assert times(drain(feed)) == [minute(i) for i in range(4)]
    clock.now = minute(5) - pd.Timedelta(microseconds=1)
    assert feed.next_step(0) is None

    clock.now = minute(5)
    ts, bars = feed.next_step(0)
    assert ts == minute(4)
    assert list(bars) == ["BTC/USDT"]
    bar = bars["BTC/USDT"]
    assert (bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        minute(4),
        *ohlcv(4),
    )
    assert not feed.exhausted


def test_resume_after_catches_up_across_several_pages(exchange: FakeBinance) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(i) for i in range(2600)])
    clock = Clock(minute(2600))  # all 2,600 bars closed
    feed = feed_for(exchange, clock)
    feed.resume_after(minute(9))

    first = feed.next_step(0)
    # One poll paged through all 2,590 missed bars at Binance's 1,000 per request.
    assert exchange.kline_requests() >= 3
    steps = [first, *drain(feed)]
    assert times(steps) == [minute(i) for i in range(10, 2600)]
    assert [bars["BTC/USDT"].close for _, bars in steps] == [100.5 + i for i in range(10, 2600)]
    assert exchange.paths() == {EXCHANGE_INFO, KLINES}


def test_resume_from_none_starts_with_the_last_history_bars(exchange: FakeBinance) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(i) for i in range(11)])
    clock = Clock(minute(10) + pd.Timedelta(seconds=5))  # bars 0..9 closed, bar 10 forming
    feed = feed_for(exchange, clock, history_bars=3)
    feed.resume_after(None)

    assert times(drain(feed)) == [minute(7), minute(8), minute(9)]


def test_steps_strictly_increase_and_never_repeat(exchange: FakeBinance) -> None:
    clock = Clock(minute(0))
    feed = feed_for(exchange, clock)
    feed.resume_after(minute(-1))
    seen: list[pd.Timestamp] = []
    for i in range(6):
        exchange.put_bar("BTCUSDT", "1m", T0_MS + i * MINUTE_MS, ohlcv(i))  # bar i forms
        for second in (20, 40, 60):  # several polls per minute, the last one after the close
            clock.now = minute(i) + pd.Timedelta(seconds=second)
            seen += times(drain(feed))
    assert seen == [minute(i) for i in range(6)]

    restarted = feed_for(exchange, clock)  # a restart resumes after the last step it processed
    exchange.put_bar("BTCUSDT", "1m", T0_MS + 6 * MINUTE_MS, ohlcv(6))
    clock.now = minute(7)
    restarted.resume_after(seen[-1])
    assert times(drain(restarted)) == [minute(6)]


def test_a_step_waits_for_a_symbol_whose_bar_is_late(exchange: FakeBinance) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(0)])
    clock = Clock(minute(1) + pd.Timedelta(seconds=1))  # bar 0 closed 1 s ago
    feed = feed_for(exchange, clock, symbols=("BTC/USDT", "ETH/USDT"), settle_seconds=30.0)
    feed.resume_after(minute(-1))
    assert feed.next_step(0) is None  # ETH's bar 0 is not published yet

    exchange.put_bars("ETHUSDT", "1m", T0_MS, [ohlcv(50)])
    ts, bars = feed.next_step(0)
    assert ts == minute(0)
    assert {s: b.open for s, b in bars.items()} == {"BTC/USDT": 100.0, "ETH/USDT": 150.0}


def test_a_later_bar_shows_the_lagging_symbol_sits_the_step_out(exchange: FakeBinance) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(0), ohlcv(1)])
    exchange.put_bar("ETHUSDT", "1m", T0_MS, ohlcv(50))
    exchange.put_bar("ETHUSDT", "1m", T0_MS + 2 * MINUTE_MS, ohlcv(52))  # no ETH trade at 1
    clock = Clock(minute(3))
    feed = feed_for(exchange, clock, symbols=("BTC/USDT", "ETH/USDT"), settle_seconds=3600.0)
    feed.resume_after(minute(-1))

    steps = drain(feed)
    # ETH's bar 2 shows it had no bar 1, so step 1 goes out at once without it; step 2 in turn
    # waits for BTC, which has shown nothing at or after 2 (and settle_seconds is an hour).
    assert [(ts, sorted(bars)) for ts, bars in steps] == [
        (minute(0), ["BTC/USDT", "ETH/USDT"]),
        (minute(1), ["BTC/USDT"]),
    ]


def test_after_settle_seconds_a_symbol_without_a_bar_sits_the_step_out(
    exchange: FakeBinance, caplog: pytest.LogCaptureFixture
) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(0), ohlcv(1)])
    exchange.put_bar("ETHUSDT", "1m", T0_MS, ohlcv(50))
    clock = Clock(minute(2) + pd.Timedelta(seconds=1))  # bar 1 closed 1 s ago
    feed = feed_for(exchange, clock, symbols=("BTC/USDT", "ETH/USDT"), settle_seconds=10.0)
    feed.resume_after(minute(-1))
    assert times(drain(feed)) == [minute(0)]  # bar 1 waits for ETH

    clock.now = minute(2) + pd.Timedelta(seconds=10)  # settle_seconds after bar 1's close
    ts, bars = feed.next_step(0)
    assert (ts, list(bars)) == (minute(1), ["BTC/USDT"])

    # ETH's bar 1 turns up after its step was handed over: dropped, the step is not repeated.
    exchange.put_bar("ETHUSDT", "1m", T0_MS + MINUTE_MS, ohlcv(51))
    exchange.put_bar("BTCUSDT", "1m", T0_MS + 2 * MINUTE_MS, ohlcv(2))
    exchange.put_bar("ETHUSDT", "1m", T0_MS + 2 * MINUTE_MS, ohlcv(52))
    clock.now = minute(3)
    with caplog.at_level(logging.WARNING, logger="n1v1.live.ccxt_feed"):
        steps = drain(feed)
    assert [(ts, sorted(bars)) for ts, bars in steps] == [(minute(2), ["BTC/USDT", "ETH/USDT"])]
    assert "ETH/USDT bar at 2024-01-01T00:01:00+00:00 arrived after" in caplog.text


@pytest.mark.parametrize(
    ("path", "status", "body", "content_type", "logged"),
    [
        (KLINES, 500, "Internal Server Error", "text/plain", "ExchangeNotAvailable"),
        (KLINES, 200, '[[1704067200000,"100.0","10', "application/json", "BadResponse"),
        (KLINES, 200, "<html>Gateway busy</html>", "text/html", "BadResponse"),
        (
            KLINES,
            429,
            '{"code":-1003,"msg":"Too many requests"}',
            "application/json",
            "DDoSProtection",
        ),
        (
            EXCHANGE_INFO,
            503,
            "<html>Service Unavailable</html>",
            "text/html",
            "ExchangeNotAvailable",
        ),
    ],
    ids=["klines-500", "klines-truncated-json", "klines-html", "klines-429", "exchangeinfo-503"],
)
def test_an_exchange_error_is_logged_and_retried_on_the_next_poll(
    exchange: FakeBinance,
    caplog: pytest.LogCaptureFixture,
    path: str,
    status: int,
    body: str,
    content_type: str,
    logged: str,
) -> None:
    exchange.put_bars("BTCUSDT", "1m", T0_MS, [ohlcv(0), ohlcv(1)])
    feed = feed_for(exchange, Clock(minute(2)))
    feed.resume_after(minute(-1))
    exchange.fail_next(path, status, body, content_type)

    with caplog.at_level(logging.WARNING, logger="n1v1.live.ccxt_feed"):
        assert feed.next_step(0) is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert logged in caplog.text and "binance market data poll failed" in caplog.text

    assert times(drain(feed)) == [minute(0), minute(1)]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ((100.0, 90.0, 99.0, 100.5, 1.0), "high"),  # high below open and close (and low)
        ((100.0, 101.0, 99.0, math.nan, 1.0), "close"),
        ((100.0, math.inf, 99.0, 100.5, 1.0), "high"),
        ((100.0, 101.0, 99.0, 100.5, -5.0), "volume"),
    ],
    ids=["high-below-low", "nan-close", "infinite-high", "negative-volume"],
)
def test_a_bad_bar_is_an_error_naming_symbol_and_bar_time(
    exchange: FakeBinance, bad: tuple[float, float, float, float, float], field: str
) -> None:
    exchange.put_bars("ETHUSDT", "1m", T0_MS, [ohlcv(0), ohlcv(1), bad, ohlcv(3)])
    feed = feed_for(exchange, Clock(minute(4)), symbols=("ETH/USDT",))
    feed.resume_after(minute(-1))

    with pytest.raises(ValueError, match=r"ETH/USDT bar at 2024-01-01T00:02:00\+00:00") as err:
        feed.next_step(0)
    assert f"field '{field}'" in str(err.value)


def test_an_unknown_exchange_id_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"exchange_id 'binanse'.*did you mean binance"):
        CcxtBarFeed("binanse", ["BTC/USDT"], "1m", clock=Clock(T0))


def test_a_symbol_the_exchange_does_not_list_is_a_clear_error(exchange: FakeBinance) -> None:
    feed = feed_for(exchange, Clock(minute(1)), symbols=("BTC/USDT", "BTC/USTD"))
    with pytest.raises(ValueError, match=r"symbol 'BTC/USTD'.*did you mean 'BTC/USDT'"):
        feed.next_step(0)


def test_the_status_says_the_feed_is_live_exchange_data(exchange: FakeBinance) -> None:
    feed = feed_for(exchange, Clock(minute(1)), symbols=("BTC/USDT", "ETH/USDT"))
    assert feed_description(feed) == {
        "kind": "ccxt",
        "label": "live 1m bars of BTC/USDT, ETH/USDT from binance (public market data)",
        "phase": "live",
    }
