"""A database outage in the middle of a paper session: the engine stops trading safely, says why,
and resumes by itself with exactly the journal of an uninterrupted run.

PostgreSQL is reached through a TCP proxy of the test's own (tests/tcp_proxy.py) that resets every
connection and refuses new ones for a while, then forwards again; the machine's server runs on for
everyone else. SQLite is "unreachable" the way a file database is: another process holds its write
lock past the busy timeout. No Ray: the session is the Engine replica's, driven directly.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from journal_outcome import invariant_problems, outcome
from tcp_proxy import TcpProxy
from test_store import _postgres_url

from n1v1.live.session import STORE_UNAVAILABLE, CommandError, TradingSession
from n1v1.serve.args import AppArgs, replay_feed
from n1v1.store import StoreReader, create_store

T = TypeVar("T")
# Two one-minute datasets in one USD account, 5 hours: 301 steps; at 100 bars a second the replay
# takes about 3 s, so an outage of a few seconds lands in its middle.
FEED = {
    "kind": "replay",
    "datasets": ["coinbase_BTC-USD_1m", "coinbase_LTC-USD_1m"],
    "start": "2018-04-04 00:00",
    "end": "2018-04-04 05:00",
    "bars_per_second": 100,
}
LEASE_TTL = 1.5  # shorter than the outage: the lease expires and is taken again


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def app_args(store_url: str, **feed: Any) -> AppArgs:
    return AppArgs.model_validate(
        {
            "store_url": store_url,
            "feed": {**FEED, **feed},
            "strategies": [
                {"name": "ema_cross", "params": {"fast": 5, "slow": 20}},
                {"name": "rsi", "params": {"period": 14}},
            ],
            "risk": {"fraction": 0.3, "stop_loss_pct": 0.01},
        }
    )


def session_for(args: AppArgs, store_url: str) -> TradingSession:
    return TradingSession(
        args.settings(),
        args.strategies,
        replay_feed(args.feed),
        create_store(store_url),
        window=args.engine.window,
        lease_ttl=LEASE_TTL,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    """The uninterrupted run of the same feed, unpaced, on its own SQLite store."""
    url = f"sqlite:///{tmp_path_factory.mktemp('reference') / 'reference.db'}"
    args = app_args(url, bars_per_second=0)
    session = session_for(args, url)
    session.start()
    try:
        wait_for(lambda: session.state == "replay_finished", 60, "the reference run")
    finally:
        session.stop()
    assert session.engine.portfolio.fees_paid > 0, "the reference run must trade"
    return outcome(session.store), session.steps_done


@pytest.fixture
def pg_url() -> Iterator[str]:
    yield from _postgres_url()


def check_outage_then_resume(
    session: TradingSession,
    direct: StoreReader,
    cut: Callable[[], None],
    restore: Callable[[], None],
    outage_s: float,
) -> dict[str, Any]:
    """Start `session`, cut its store a third into the feed, check what it says and does while
    cut (reading the journal through `direct`, a path the cut does not touch), restore, and
    return what the outage looked like."""
    session.start()
    wait_for(lambda: session.steps_done >= 100, 30, "a third of the feed")
    token = session.snapshot["lease"]["token"]
    cut()
    lost = wait_for(
        lambda: (s := session.snapshot)["state"] == STORE_UNAVAILABLE and s, 20, "the outage"
    )
    cut_at = time.monotonic()
    assert lost["store"]["available"] is False and lost["store"]["outages"] == 1
    assert "the store is unreachable since" in lost["failure"]
    assert "rebuilds from it" in lost["failure"]
    refused = session.submit("pause", {"reason": "during the outage"}, "test")
    with pytest.raises(CommandError) as info:
        refused.result(5)
    assert info.value.code == "unavailable"
    # the published figures are the last committed step's: no order shown that is not journaled.
    # (A COMMIT whose answer the cut lost may have landed: the session, which cannot know, shows
    # the step before it; the rebuild after the outage takes the stored one, and the journal is
    # compared whole at the end.)
    time.sleep(0.3)
    shown = session.snapshot
    committed = direct.get_state("last_step")
    if shown["step"] == committed["step"] - 1:
        assert shown["last_bar_time"] < committed["time"]
    else:
        assert shown["step"] == committed["step"]
        assert shown["last_bar_time"] == committed["time"]
    stored = direct.latest_orders()
    for order in shown["working_orders"]:
        assert order["client_order_id"] in stored
    time.sleep(max(0.0, outage_s - (time.monotonic() - cut_at)))
    assert session.snapshot["state"] == STORE_UNAVAILABLE  # nothing traded during the outage
    assert direct.get_state("last_step") == committed
    restore()
    resumed_at = time.monotonic()
    wait_for(lambda: session.state in ("running", "replay_finished"), 20, "the session to resume")
    resumed_s = time.monotonic() - resumed_at
    wait_for(lambda: session.state == "replay_finished", 60, "the end of the replay")
    final = session.snapshot
    assert final["store"] == {
        "available": True,
        "unavailable_since": None,
        "outages": 1,
        "last_outage_s": pytest.approx(outage_s, abs=8),
    }
    return {"token_before": token, "token_after": final["lease"]["token"], "resumed_s": resumed_s}


def test_a_postgresql_outage_stops_trading_and_resumes_to_an_identical_journal(
    pg_url: str, reference: tuple[dict[str, Any], int]
) -> None:
    expected, steps = reference
    proxy = TcpProxy(5432)
    proxy.start()
    proxied = pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert proxied != pg_url, f"expected a URL on 127.0.0.1:5432, got {pg_url}"
    create_store(pg_url).dispose()
    session = session_for(app_args(proxied), proxied)
    direct = StoreReader(create_store(pg_url))
    try:
        seen = check_outage_then_resume(
            session, direct, lambda: proxy.cut("reset"), proxy.restore, outage_s=2.5
        )
    finally:
        session.stop()
        proxy.close()
    # the outage outlasted the lease: it was taken again, with the next fencing token
    assert seen["token_after"] == seen["token_before"] + 1
    assert seen["resumed_s"] < 8  # probes every 0.5 to 2 s, then a rebuild
    assert session.steps_done == steps
    assert invariant_problems(outcome(direct.store), expected, steps) == []
    direct.store.dispose()


def test_a_sqlite_store_locked_past_its_busy_timeout_stops_trading_and_resumes(
    tmp_path: Path, reference: tuple[dict[str, Any], int]
) -> None:
    expected, steps = reference
    path = tmp_path / "n1v1.db"
    url = f"sqlite:///{path}"
    session = session_for(app_args(url), url)
    direct = StoreReader(create_store(url))  # WAL: reads go on while another holds the lock
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)

    def lock() -> None:
        holder.execute("BEGIN IMMEDIATE")  # the write lock, as a long backup or a stuck writer

    def unlock() -> None:
        holder.execute("ROLLBACK")

    try:
        # the engine's writes (and its probes) wait out SQLite's busy timeout (5 s) before failing
        check_outage_then_resume(session, direct, lock, unlock, outage_s=1.0)
    finally:
        session.stop()
        holder.close()
    assert session.steps_done == steps
    assert direct.get_state("last_step")["step"] == steps
    assert invariant_problems(outcome(direct.store), expected, steps) == []
