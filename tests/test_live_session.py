"""The trading session: operator commands, the one-writer lease, and restart safety.

Sessions trade the first bars of two bundled one-minute datasets (BTC/USD, LTC/USD) into SQLite
stores. Most tests stop the feed at an exact step (`GatedFeed`), act, and let it go on, so every
expected answer follows from the step at which something was done. The restart test kills a
session's process with SIGKILL half-way and checks that a new session, rebuilt from the store,
ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from session_worker import (
    SCHEDULE,
    SLOTS,
    GatedFeed,
    make_session,
    market,
    run_to,
    run_to_end,
    settings,
    wait_until,
)
from sqlalchemy import select, update
from test_ml_signal import register_tiny

from n1v1.config import ConfigError, Settings
from n1v1.data.market import load_market
from n1v1.live import session as session_module
from n1v1.live.config import StrategySlot
from n1v1.live.replay import PacedReplay, SyntheticContinuation
from n1v1.live.session import SLOTS_COMMAND, CommandError, TradingSession
from n1v1.store import Store, StoreReader, create_store, current_lease
from n1v1.store import schema as t

WORKER = Path(__file__).with_name("session_worker.py")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = create_store(f"sqlite:///{tmp_path}/s.db")
    yield s
    s.dispose()


@pytest.fixture
def gated(store: Store) -> Iterator[tuple[TradingSession, GatedFeed]]:
    """A running session with no open-position limit, held before its first bar."""
    feed = GatedFeed(market())  # 300 steps
    session = make_session(store, feed, config=settings(max_open_positions=None))
    session.start()
    wait_until(lambda: session.state == "running", "the session to take the lease")
    yield session, feed
    session.stop()


def _command(session: TradingSession, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return session.submit(kind, payload, "test").result(timeout=30)


def _bar_time(feed: GatedFeed, step: int) -> pd.Timestamp:
    """The time of the bar the session processed as its `step`-th step (1-based)."""
    return feed.times[step - 1]


# -- commands --------------------------------------------------------------------------------------
def test_pause_refuses_new_entries_with_rule_paused(
    gated: tuple[TradingSession, GatedFeed], store: Store
) -> None:
    session, feed = gated
    run_to(session, feed, 30)
    assert _command(session, "pause", {"reason": "lunch"}) == {"paused": True}
    paused_at = _bar_time(feed, 30)
    run_to(session, feed, 250)

    reader = StoreReader(store)
    after = [d for d in reader.risk_decisions() if d.timestamp > paused_at]
    assert {(d.rule, d.action) for d in after} == {("paused", "reject")}
    assert "paused by operator: lunch" in after[0].reason
    entries = [
        o
        for o in reader.latest_orders().values()
        if o.purpose.value == "entry" and o.created_at > paused_at
    ]
    assert entries == []
    assert session.snapshot["paused"] is True
    assert session.snapshot["halt"] == {"rule": "paused", "reason": "paused by operator: lunch"}


def test_config_risk_change_applies_from_that_step_and_is_persisted(
    gated: tuple[TradingSession, GatedFeed], store: Store
) -> None:
    session, feed = gated
    run_to(session, feed, 20)
    result = _command(session, "config", {"risk": {"max_open_positions": 1}})
    changed_at = _bar_time(feed, 20)
    run_to(session, feed, 300)

    expected = {"paused": False, "risk": {"max_open_positions": 1}, "strategies": {}}
    assert result == {"config": expected}
    reader = StoreReader(store)
    assert reader.get_state("live_config") == expected
    limited = [d.timestamp for d in reader.risk_decisions() if d.rule == "max_open_positions"]
    assert limited, "the new limit should refuse an entry in steps 21-300"
    assert min(limited) > changed_at  # the rule did not exist before the command
    assert session.snapshot["risk"]["limits"]["max_open_positions"] == 1
    assert reader.commands()[0] | {"at": None} == {
        "step": 20,
        "kind": "config",
        "payload": {"risk": {"max_open_positions": 1}},
        "actor": "test",
        "at": None,
    }


def test_strategy_parameter_override_shows_in_the_snapshot(
    gated: tuple[TradingSession, GatedFeed],
) -> None:
    session, feed = gated
    run_to(session, feed, 5)
    _command(session, "config", {"strategies": {"fast_sma": {"fast": 3}}})

    strategies = {s["id"]: s for s in session.snapshot["strategies"]}
    assert {k: v for k, v in strategies["fast_sma"].items() if k != "pnl"} == {
        "id": "fast_sma",
        "name": "sma_cross",
        "params": {"fast": 3, "slow": 20},
        "effective_params": {"fast": 3, "slow": 20},  # every parameter, defaults included
        "state": "active",
        "note": "",
    }
    assert strategies["rsi"]["effective_params"] == {
        "period": 14,
        "oversold": 30.0,
        "overbought": 70.0,
    }
    assert strategies["ema_cross"]["params"] == {"fast": 8, "slow": 30}  # untouched
    assert session.snapshot["live_config"]["strategies"] == {"fast_sma": {"fast": 3}}


@pytest.mark.parametrize(
    ("patch", "named"),
    [
        ({"risk": {"max_drawdwn": 0.2}}, "risk.max_drawdwn"),
        ({"risk": {"max_drawdown": 2}}, "risk.max_drawdown"),
        ({"strategies": {"slow_sma": {"fast": 3}}}, "strategies.slow_sma"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_config_names_the_key_and_changes_nothing(
    gated: tuple[TradingSession, GatedFeed], store: Store, patch: dict[str, Any], named: str
) -> None:
    session, feed = gated
    run_to(session, feed, 5)
    before = session.snapshot["live_config"]

    with pytest.raises(CommandError) as err:
        _command(session, "config", patch)

    assert err.value.code == "invalid"
    assert named in err.value.message
    assert session.snapshot["live_config"] == before
    assert session.snapshot["risk"]["limits"]["max_drawdown"] is None
    reader = StoreReader(store)
    assert reader.commands() == []
    assert reader.get_state("live_config") is None


def test_a_feed_mixing_quote_currencies_is_refused_before_the_session_starts(store: Store) -> None:
    euro = load_market("coinbase_BTC-EUR_1m").iloc[:10]
    feed = GatedFeed({**market(10), "BTC/EUR": euro})
    with pytest.raises(ConfigError, match=r"EUR: BTC/EUR; USD: BTC/USD, LTC/USD"):
        make_session(store, feed)
    assert StoreReader(store).bar_log() == []


# -- several strategies ----------------------------------------------------------------------------
def test_orders_record_their_strategies_and_each_has_its_own_pnl(tmp_path: Path) -> None:
    """A strategy's P&L in the session is its shadow account: exactly what a session running that
    strategy alone would hold, bar for bar (docs/execution.md, "Several strategies on one
    symbol")."""
    config = settings(max_open_positions=None)
    runs = {}
    for label, slots in (("all", SLOTS), ("alone", SLOTS[:1])):
        store = create_store(f"sqlite:///{tmp_path}/{label}.db")
        feed = PacedReplay(market(150), 0)
        session = make_session(store, feed, config=config, slots=slots)
        session.start()
        try:
            run_to_end(session, feed, len(feed))
        finally:
            session.stop()
        runs[label] = (session.snapshot, StoreReader(store).latest_orders())
        store.dispose()
    (together, orders), (alone, _) = runs["all"], runs["alone"]
    pnl = {s["id"]: s["pnl"] for s in together["strategies"]}
    assert set(pnl) == {"fast_sma", "rsi", "ema_cross"}
    shadow = pnl["fast_sma"]
    assert shadow["equity"] == alone["equity"] and shadow["fees_paid"] == alone["fees_paid"]
    assert shadow["net_pnl"] == shadow["equity"] - alone["initial_cash"]
    # and alone, a strategy's shadow is its account
    (only,) = alone["strategies"]
    assert only["pnl"]["equity"] == alone["equity"]
    # every strategy order names the slots whose targets caused it; rule orders name none
    by_purpose: dict[str, set[str]] = {}
    for order in orders.values():
        by_purpose.setdefault(order.purpose.value, set()).add(order.strategy)
    named = by_purpose["entry"] | by_purpose.get("exit", set()) | by_purpose["stop_loss"]
    assert named and all(n and set(n.split("+")) <= set(pnl) for n in named)


# -- the lease -------------------------------------------------------------------------------------
def test_a_second_session_stands_by_naming_the_holder_then_takes_over(store: Store) -> None:
    first_feed, second_feed = GatedFeed(market(60)), GatedFeed(market(60))
    first = make_session(store, first_feed, lease_ttl=300.0, holder="first")  # no renewal here
    second = make_session(store, second_feed, lease_ttl=300.0, holder="second")
    first.start()
    try:
        wait_until(lambda: first.state == "running", "the first session to take the lease")
        run_to(first, first_feed, 20)
        first_strategies = first.snapshot["strategies"]
        second.start()
        wait_until(lambda: second.snapshot.get("state") == "standby", "the second to stand by")

        held = current_lease(store, "engine")
        assert held is not None and held.holder == "first"
        expiry = held.expires_at.isoformat()
        assert second.snapshot["lease"] == {"holder": "first", "token": 1, "expires_at": expiry}
        assert f"held by 'first' until {expiry}" in second.snapshot["failure"]
        with pytest.raises(CommandError, match="standby") as err:
            second.submit("pause", {}, "test").result(timeout=5)
        assert err.value.code == "unavailable"

        first.stop()  # releases the lease
        assert first.state == "stopped"
        wait_until(
            lambda: second.snapshot.get("state") == "running", "the second session to take over"
        )
        assert second.snapshot["lease"]["holder"] == "second"
        assert second.snapshot["lease"]["token"] == 2
        assert second.snapshot["step"] == 20  # rebuilt from the first session's 20 steps
        assert second.snapshot["strategies"] == first_strategies  # shadows rebuilt by replay
        run_to(second, second_feed, 30)
    finally:
        first.stop()
        second.stop()


# -- restart safety --------------------------------------------------------------------------------
def _outcome(store: Store) -> dict[str, Any]:
    """What a run left in the store, in a form two runs can be compared by."""
    reader = StoreReader(store)
    return {
        "orders": {
            k: (o.status.value, o.qty, o.filled_qty, o.avg_fill_price)
            for k, o in reader.latest_orders().items()
        },
        "manual": [k for k, o in reader.latest_orders().items() if o.purpose.value == "manual"],
        "algo_orders": [{**a, "updated_at": None} for a in reader.algo_orders()],
        "fills": reader.fills(),
        "positions": reader.positions(),
        "equity": reader.equity(),
        "commands": [(c["step"], c["kind"], c["payload"]) for c in reader.commands()],
        "live_config": reader.get_state("live_config"),
    }


def _uninterrupted_run(tmp_path: Path) -> dict[str, Any]:
    store = create_store(f"sqlite:///{tmp_path}/reference.db")
    feed = PacedReplay(market(), 0)
    session = make_session(store, feed, schedule=SCHEDULE)
    session.start()
    try:
        run_to_end(session, feed, len(feed))
    finally:
        session.stop()
    outcome = _outcome(store)
    store.dispose()
    return outcome


def test_a_session_killed_with_sigkill_is_carried_on_exactly(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), str(path), "--bars-per-second", "80", "--lease-ttl", "2"],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=WORKER.parent,
        )
    try:
        # The worker creates the store; open it only once the worker has printed progress.
        wait_until(
            lambda: "step " in log.read_text() or worker.poll() is not None,
            "the worker's first progress line",
        )
        store = create_store(f"sqlite:///{path}")
        reader = StoreReader(store)

        def steps_done() -> int:
            return (reader.get_state("last_step") or {"step": 0})["step"]

        wait_until(
            lambda: steps_done() >= 120 or worker.poll() is not None, "the worker to pass step 120"
        )
        assert worker.poll() is None, (
            f"precondition: the worker is still trading\n{log.read_text()}"
        )
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    total = len(PacedReplay(market(), 0))
    killed_at = steps_done()
    assert 120 <= killed_at < total, f"precondition: killed mid-run, not at step {killed_at}"
    # all three before the kill; the parent may still be working
    assert [c["kind"] for c in reader.commands()] == ["config", "order", "algo_order"]

    feed = PacedReplay(market(), 0)
    successor = make_session(store, feed, lease_ttl=2.0, holder="successor")
    successor.start()  # stands by until the dead worker's 2 s lease runs out
    try:
        expected = _uninterrupted_run(tmp_path)  # meanwhile, on its own store
        run_to_end(successor, feed, total)
    finally:
        successor.stop()
    resumed = _outcome(store)
    taken = current_lease(store, "engine")
    assert taken is not None and (taken.holder, taken.token) == ("successor", 2)
    store.dispose()

    (parent,) = resumed["algo_orders"]
    assert resumed["algo_orders"] == expected["algo_orders"]
    # the parent completed exactly once: 8 children of 0.5, each filled once, none sent twice
    assert (parent["status"], parent["filled"]) == ("done", "4.0000000000")
    children = parent["document"]["children"]
    assert len(children) == len(set(children)) == 8
    assert [resumed["orders"][c][:3] for c in children] == [("filled", 0.5, 0.5)] * 8
    assert sum(f.client_order_id in children for f in resumed["fills"]) == 8
    manual = [k for k in resumed["manual"] if k not in children]
    assert len(manual) == 1 and resumed["orders"][manual[0]][0] == "filled"
    assert (
        resumed["commands"]
        == expected["commands"]
        == [(step, kind, payload) for step, (kind, payload) in SCHEDULE.items()]
    )
    assert resumed["live_config"] == expected["live_config"]
    assert resumed["orders"] == expected["orders"]
    assert resumed["fills"] == expected["fills"]
    assert resumed["positions"] == expected["positions"]
    assert resumed["equity"] == expected["equity"]
    assert len(expected["fills"]) >= 10 and len(expected["equity"]) == total


def test_a_tampered_store_fails_the_rebuild_and_the_session_refuses_to_trade(
    store: Store,
) -> None:
    """Without snapshots the rebuild replays and checks every step (with them, the steps after
    the snapshot: tests/test_snapshots.py)."""
    feed = PacedReplay(market(150), 0)
    first = make_session(store, feed, snapshot_every=0)
    first.start()
    try:
        run_to_end(first, feed, len(feed))
    finally:
        first.stop()
    stored_steps = len(feed)
    with store.transaction() as conn:
        third = conn.execute(select(t.fills.c.id).order_by(t.fills.c.id).limit(1).offset(2))
        conn.execute(
            update(t.fills)
            .where(t.fills.c.id == third.scalar_one())
            .values(price=t.fills.c.price + 1.0)
        )

    successor = make_session(store, PacedReplay(market(), 0), holder="successor")
    successor.start()
    try:
        wait_until(lambda: not successor.alive, "the successor to give up")
        assert successor.state == "failed"
        assert successor.failure.startswith("RebuildError: ")
        assert "first difference at fill #2" in successor.failure
        assert successor.snapshot["state"] == "failed"
        with pytest.raises(CommandError, match="failed") as err:
            successor.submit(
                "order", {"symbol": "BTC/USD", "side": "buy", "qty": 0.1}, "t"
            ).result()
        assert err.value.code == "unavailable"
    finally:
        successor.stop()
    assert len(StoreReader(store).bar_log()) == stored_steps  # not one more bar traded


# -- the end of a replay ---------------------------------------------------------------------------
def test_a_finished_replay_is_a_state_that_refuses_orders_but_takes_other_commands(
    store: Store,
) -> None:
    feed = PacedReplay(market(40), 0)
    session = make_session(store, feed)
    session.start()
    try:
        run_to_end(session, feed, len(feed))
        wait_until(lambda: session.snapshot["state"] == "replay_finished", "replay_finished")
        assert session.snapshot["feed"]["phase"] == "finished"
        with pytest.raises(CommandError, match="replay has finished") as err:
            _command(session, "order", {"symbol": "LTC/USD", "side": "buy", "qty": 1.0})
        assert err.value.code == "conflict"
        assert _command(session, "pause", {"reason": "done"}) == {"paused": True}
    finally:
        session.stop()


def test_with_a_synthetic_continuation_the_session_keeps_trading_and_says_so(
    store: Store,
) -> None:
    feed = PacedReplay(market(40), 0, continuation=SyntheticContinuation())
    session = make_session(store, feed)
    session.start()
    try:
        wait_until(lambda: session.snapshot.get("step", 0) >= len(feed) + 50, "50 synthetic steps")
        snap = session.snapshot
        assert snap["state"] == "running"
        assert snap["feed"]["phase"] == "synthetic"
        assert pd.Timestamp(snap["last_bar_time"]) > pd.Timestamp(snap["feed"]["replay_end"])
    finally:
        session.stop()


# -- a strategy that cannot start ------------------------------------------------------------------
ML_SLOTS = [
    StrategySlot(name="sma_cross", params={"fast": 5, "slow": 20}),
    StrategySlot(name="ml_signal", params={"model": "tiny", "version": "v0001"}),
]


def _ml_session(store: Store, feed: Any, root: Path, holder: str) -> TradingSession:
    config = Settings.model_validate(
        {"risk": {"fraction": 0.4, "stop_loss_pct": 0.01}, "ml": {"model_root": str(root)}}
    )
    return TradingSession(config, list(ML_SLOTS), feed, store, window=100, holder=holder)


def test_a_strategy_without_its_model_stands_aside_then_joins_and_a_rebuild_agrees(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(session_module, "SLOT_RETRY_S", 0.1)  # look for the model often
    root = tmp_path / "models"  # empty: the model is not there yet
    feed = GatedFeed(market())
    first = _ml_session(store, feed, root, "first")
    with caplog.at_level(logging.INFO, logger="n1v1.live.session"):
        first.start()
        try:
            wait_until(lambda: first.state == "running", "the session to take the lease")
            run_to(first, feed, 20)
            ml = {s["id"]: s for s in first.snapshot["strategies"]}["ml_signal"]
            assert ml["state"] == "standing_aside"
            assert ml["note"].startswith("stands aside (target 0, no orders) until it can start")
            assert f"n1v1 train --name tiny --data ... --model-root {root}" in ml["note"]
            time.sleep(1.0)  # about ten more looks for the model: none of them logs again
            aside_lines = [r for r in caplog.records if "stands aside" in r.getMessage()]
            assert len(aside_lines) == 1 and aside_lines[0].levelno == logging.WARNING

            # A version being registered exists for a moment as an empty folder: the reason
            # changes, the slots standing aside do not, so nothing new is logged.
            (root / "tiny" / "v0001").mkdir(parents=True)
            time.sleep(0.5)
            (root / "tiny" / "v0001").rmdir()
            assert [c["kind"] for c in StoreReader(store).commands()] == [SLOTS_COMMAND]

            assert register_tiny(root) == "v0001"
            wait_until(
                lambda: first.snapshot["strategies"][1]["state"] == "active", "the slot to join"
            )
            assert first.steps_done == 20  # the feed is held: it joins before step 21's bar
            run_to(first, feed, feed.total)
            first_trades = first.trades_page(None, 1000, 0)
        finally:
            first.stop()
    reader = StoreReader(store)
    slots_log = [(c["step"], c["payload"]) for c in reader.commands() if c["kind"] == SLOTS_COMMAND]
    assert slots_log == [(0, {"aside": {"ml_signal": ml["note"]}}), (20, {"aside": {}})]
    ml_signals = [s.timestamp for s in reader.signals() if s.strategy == "ml_signal"]
    assert ml_signals and min(ml_signals) >= feed.times[20]  # nothing before the 21st bar

    # A new session replays the log: the slot joins at step 20 again, every fill is reproduced.
    second = _ml_session(store, PacedReplay(market(), 0), root, "second")
    second.start()
    try:
        wait_until(lambda: second.state in ("replay_finished", "failed"), "the rebuild")
        assert second.state == "replay_finished", second.failure
        assert second.trades_page(None, 1000, 0) == first_trades
    finally:
        second.stop()

    # Without the model the stored session still rebuilds: the logged predictions are its inputs
    # (n1v1/live/predictions.py), so no model is asked and every fill is reproduced.
    shutil.rmtree(root)
    third = _ml_session(store, PacedReplay(market(), 0), root, "third")
    third.start()
    try:
        wait_until(lambda: third.state in ("replay_finished", "failed"), "the third rebuild")
        assert third.state == "replay_finished", third.failure
        assert third.trades_page(None, 1000, 0) == first_trades
    finally:
        third.stop()
