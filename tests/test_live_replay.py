"""The paced replay: what it hands out after its last recorded bar, and how it says what it is.

Unpaced (0 bars a second), so nothing here waits on a clock.
"""

from __future__ import annotations

import pandas as pd
import pytest
from session_worker import market

from n1v1.data.market import load_market
from n1v1.live.replay import CONTINUATION_BLOCK, PacedReplay, SyntheticContinuation, bundled_replay


def drain(feed: PacedReplay, n: int) -> list[tuple[pd.Timestamp, dict]]:
    steps = []
    while len(steps) < n:
        step = feed.next_step(timeout=0.01)
        if step is None:
            break
        steps.append(step)
    return steps


def test_without_a_continuation_the_replay_ends_and_says_finished() -> None:
    feed = PacedReplay(market(20), 0)
    assert feed.describe()["phase"] == "replay"
    steps = drain(feed, 10_000)
    assert len(steps) == len(feed) and feed.exhausted
    described = feed.describe()
    assert (described["phase"], described["after_replay"], described["synthetic"]) == (
        "finished",
        "stop",
        None,
    )


def test_the_continuation_starts_at_the_last_closes_one_bar_after_the_replay() -> None:
    frames = market(50)
    feed = PacedReplay(frames, 0, continuation=SyntheticContinuation(seed=3))
    steps = drain(feed, len(feed) + 5)
    assert not feed.exhausted and feed.describe()["phase"] == "synthetic"
    recorded, synthetic = steps[: len(feed)], steps[len(feed) :]
    last = max(f.index[-1] for f in frames.values())
    assert recorded[-1][0] == last
    # one-minute bars: the continuation steps on by one minute, every symbol in every step
    assert [ts for ts, _ in synthetic] == [last + pd.Timedelta(minutes=k) for k in range(1, 6)]
    assert all(set(bars) == set(frames) for _, bars in synthetic)
    first = synthetic[0][1]
    for symbol, frame in frames.items():
        assert first[symbol].open == float(frame["close"].iloc[-1])  # no jump at the seam
    for _, bars in synthetic:
        for bar in bars.values():
            assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


def test_a_resumed_continuation_hands_out_the_same_bars_across_a_block_boundary() -> None:
    make = lambda: PacedReplay(market(30), 0, continuation=SyntheticContinuation(seed=7))  # noqa: E731
    reference = make()
    whole = drain(reference, len(reference) + CONTINUATION_BLOCK + 10)
    resumed = make()
    cut = len(resumed) + CONTINUATION_BLOCK - 5  # five synthetic steps before block 1 begins
    resumed.resume_after(whole[cut - 1][0])
    assert drain(resumed, 15) == whole[cut : cut + 15]
    other_seed = PacedReplay(market(30), 0, continuation=SyntheticContinuation(seed=8))
    assert drain(other_seed, len(other_seed) + 3)[-1] != whole[len(reference) + 2]


def test_a_bundled_replay_is_labelled_with_what_it_replays() -> None:
    feed_names = ["coinbase_BTC-EUR_1m", "coinbase_LTC-USD_1m"]
    feed = bundled_replay(
        feed_names,
        20,
        start="2018-04-04",
        end="2018-04-04",
        continuation=SyntheticContinuation(),
    )
    # the bundled bars of 2018-04-04 stop at 16:50 (BTC/EUR at 16:48, LTC/USD at 16:50)
    ends = [load_market(n, end="2018-04-04").index[-1] for n in feed_names]
    assert [f"{t:%H:%M}" for t in ends] == ["16:48", "16:50"]
    assert feed.label == (
        "a replay of Coinbase 1m bars of BTC/EUR, LTC/USD from 2018-04-04 00:00 to "
        "2018-04-04 16:50 UTC, at 20 bars a second"
    )
    described = feed.describe()
    assert described["after_replay"] == "synthetic"
    assert "not market data" in described["synthetic"]["note"]
    assert described["synthetic"]["interval"] == str(pd.Timedelta(minutes=1))
    assert 0.05 <= described["synthetic"]["annual_vol"] <= 3.0


def test_a_negative_pace_is_refused() -> None:
    with pytest.raises(ValueError, match="bars_per_second"):
        PacedReplay(market(5), -1)
