"""Snapshots bound recovery and change nothing: a session restored from a snapshot and replayed
from there is the session that never stopped.

One long random session (tests/random_session.py: random bars and operator commands, three
strategies, stops, trailing stops, take-profits, partial fills, breakers, shorts) runs
uninterrupted; its store is copied at step `CUT` on the way. Sessions then recover from copies of
that store in every way recovery can go (the newest snapshot, an older one after a corrupt one,
a full replay) and trade on to the end: each must end with the same journal, the same published
status and trades, and the same state, byte for byte. The kill -9 test does the same with a
process killed at random points, one of them inside a snapshot's transaction.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import random_session as rs
from session_worker import wait_until
from sqlalchemy import delete, select, update

from n1v1.domain import Bar, ClientOrderId, Order, OrderType, Side, Symbol, Trade
from n1v1.engine.algo_orders import AlgoBook
from n1v1.engine.engine import TradingEngine, _SymbolState
from n1v1.engine.portfolio import Portfolio, Position, _OpenTrade
from n1v1.execution.algos import ParentOrder, parent_to_dict
from n1v1.execution.live_venue import LiveVenue
from n1v1.execution.venue import SimulatedVenue
from n1v1.live.history import BarHistory, RollingTargets
from n1v1.live.session import TradingSession
from n1v1.live.snapshot import FORMAT, TRADE_FIELDS, _order, encode
from n1v1.risk.breaker import CircuitBreaker, DailyLossGuard, KillSwitch
from n1v1.risk.manager import RiskManager
from n1v1.store import Store, StoreReader, create_store
from n1v1.store import schema as t
from n1v1.store.snapshots import JournalMarks, list_snapshots, load_document

STEPS, SEED = 420, 11
EVERY = 25
CUT = 237  # where the store is copied: 12 steps after the snapshot at 225
WORKER = Path(__file__).with_name("random_session.py")
# What the status shows about this process rather than the trading: may differ between runs.
PROCESS_FIELDS = {
    *("holder", "lease", "recovery", "snapshots", "state", "feed", "feed_exhausted"),
    "last_step_at",  # this process's wall clock
}


def _outcome(store: Store) -> dict[str, Any]:
    """Everything a run wrote, in a form two runs can be compared by."""
    reader = StoreReader(store)
    orders = reader.latest_orders()
    return {
        "orders": orders,
        "histories": {k: reader.order_history(k) for k in orders},
        "fills": reader.fills(),
        "signals": reader.signals(),
        "risk_decisions": reader.risk_decisions(),
        "equity": reader.equity(),
        "positions": [{**p, "updated_at": None} for p in reader.positions()],
        "algo_orders": [{**a, "updated_at": None} for a in reader.algo_orders()],
        "commands": [(c["step"], c["kind"], c["payload"]) for c in reader.commands()],
        "live_config": reader.get_state("live_config"),
        "bars": len(reader.bar_log()),
    }


def _published(session: TradingSession) -> dict[str, Any]:
    status = {k: v for k, v in session.snapshot.items() if k not in PROCESS_FIELDS}
    return {"status": status, "trades": session.trades_page(None, 10_000, 0)}


def _copy(source: Path, target: Path) -> Path:
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return target


class Reference:
    """The uninterrupted run, with what it looked like at the end and at each snapshot."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.frames = rs.market(STEPS, SEED)
        self.plan = rs.command_plan(STEPS, SEED)
        self.store = create_store(f"sqlite:///{root / 'reference.db'}")
        self.mismatched: list[int] = []  # snapshot steps whose document is not the live state
        self.checked = 0
        feed = rs.ScheduledFeed(self.frames, self.plan, self.store, gate=CUT)
        session = rs.make_session(self.store, feed, on_step=self._check_snapshot)
        self.session = session
        session.start()
        try:
            wait_until(lambda: _held(session, feed, CUT) or not session.alive, f"step {CUT}")
            assert session.alive, session.failure
            self.cut = _copy(root / "reference.db", root / "cut.db")
            feed.open_to(None)
            wait_until(lambda: _finished(session, feed) or not session.alive, "the end")
            assert session.alive, session.failure
            self.outcome = _outcome(self.store)
            self.published = _published(session)
            self.state = encode(session, JournalMarks())
            self.refused = dict(feed.refused)
        finally:
            session.stop()

    def _check_snapshot(self, _latency: float, _engine: object) -> None:
        """After a step that wrote a snapshot: the stored document is the live state, encoded
        afresh (no cached trade rows)."""
        session = self.session
        if session.steps_done % EVERY:
            return
        newest = list_snapshots(self.store)[0]
        assert newest.step == session.steps_done
        document = load_document(self.store, newest)
        marks = JournalMarks(**orjson.loads(document)["marks"])
        if encode(session, marks) != document:
            self.mismatched.append(session.steps_done)
        self.checked += 1

    def copy(self, name: str) -> tuple[Path, Store]:
        """The store as it was at CUT, its holder's lease expired (as if the process had died)."""
        path = _copy(self.cut, self.root / f"{name}.db")
        store = create_store(f"sqlite:///{path}")
        with store.transaction() as conn:
            gone = pd.Timestamp.now(tz="UTC").floor("us") - pd.Timedelta(seconds=1)
            conn.execute(update(t.lease).values(expires_at=gone))
        return path, store


def _held(session: TradingSession, feed: rs.ScheduledFeed, step: int) -> bool:
    """The session has committed `step` steps and waits before the next one."""
    return session.snapshot.get("step") == step and feed.held_at(step)


def _finished(session: TradingSession, feed: rs.ScheduledFeed) -> bool:
    return feed.exhausted and session.steps_done == len(feed)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    ref = Reference(tmp_path_factory.mktemp("snapshots"))
    yield ref
    ref.store.dispose()


def _recover_and_finish(ref: Reference, store: Store, **kw: Any) -> TradingSession:
    """A new session on `store` (a copy at CUT): it recovers, then trades to the end."""
    feed = rs.ScheduledFeed(ref.frames, ref.plan, store)
    session = rs.make_session(store, feed, holder="successor", **kw)
    session.start()
    try:
        wait_until(lambda: _finished(session, feed) or not session.alive, "the end")
        assert session.alive, session.failure
    finally:
        session.stop()
    return session


def _assert_same_as_reference(ref: Reference, session: TradingSession, store: Store) -> None:
    assert _outcome(store) == ref.outcome
    assert _published(session) == ref.published
    assert encode(session, JournalMarks()) == ref.state


# -- the random session itself -----------------------------------------------------------------
def test_the_random_session_exercises_what_a_snapshot_must_keep(reference: Reference) -> None:
    """Precondition of the tests below: the session is not a trivial one."""
    out = reference.outcome
    purposes = {o.purpose.value for o in out["orders"].values()}
    assert {"entry", "manual", "stop_loss", "trailing_stop", "take_profit"} <= purposes
    fills_per_order: dict[str, int] = {}
    for fill in out["fills"]:
        fills_per_order[fill.client_order_id] = fills_per_order.get(fill.client_order_id, 0) + 1
    assert max(fills_per_order.values()) > 1  # partial fills
    kinds = {kind for _, kind, _ in out["commands"]}
    assert {"order", "config", "pause", "resume", "kill_switch", "cancel"} <= kinds
    assert {"algo_order", "algo_cancel"} <= kinds
    # parents that worked across snapshots, several children each, stopped part-way
    parents = out["algo_orders"]
    assert {"cancelled", "ended"} <= {a["status"] for a in parents}
    assert sum(len(a["document"]["children"]) > 1 and a["filled"] != "0" for a in parents) >= 2
    rules = {(d.rule, d.action) for d in out["risk_decisions"]}
    assert ("circuit_breaker", "halt") in rules and ("kill_switch", "flatten") in rules
    assert any(
        o.side.value == "sell" and o.purpose.value == "entry" for o in out["orders"].values()
    )
    assert len(reference.published["trades"]["trades"]) >= 20


def test_each_snapshot_is_the_live_state_when_it_was_taken(reference: Reference) -> None:
    assert reference.checked == STEPS // EVERY
    assert reference.mismatched == []


# -- recovery ------------------------------------------------------------------------------------
def test_recovering_from_the_newest_snapshot_ends_like_the_uninterrupted_run(
    reference: Reference,
) -> None:
    _, store = reference.copy("newest")
    session = _recover_and_finish(reference, store)
    assert session.recovery["from_snapshot_step"] == 225
    assert session.recovery["replayed_steps"] == CUT - 225
    assert session.recovery["fallbacks"] == []
    _assert_same_as_reference(reference, session, store)
    store.dispose()


def test_a_full_replay_ends_the_same(reference: Reference) -> None:
    _, store = reference.copy("full")
    with store.transaction() as conn:
        conn.execute(delete(t.snapshots))
    session = _recover_and_finish(reference, store)
    assert session.recovery["from_snapshot_step"] is None
    assert session.recovery["replayed_steps"] == CUT
    _assert_same_as_reference(reference, session, store)
    store.dispose()


def _corrupt(store: Store, snapshot_id: int) -> None:
    with store.transaction() as conn:
        payload = conn.execute(
            select(t.snapshots.c.payload).where(t.snapshots.c.id == snapshot_id)
        ).scalar_one()
        flipped = payload[:-8] + bytes(b ^ 0xFF for b in payload[-8:])
        conn.execute(
            update(t.snapshots).where(t.snapshots.c.id == snapshot_id).values(payload=flipped)
        )


def test_a_corrupt_snapshot_falls_back_to_the_older_one_and_says_so(reference: Reference) -> None:
    _, store = reference.copy("corrupt")
    newest, older = list_snapshots(store)[:2]
    _corrupt(store, newest.id)
    session = _recover_and_finish(reference, store)
    assert session.recovery["from_snapshot_step"] == older.step == 200
    assert session.recovery["replayed_steps"] == CUT - 200
    (fallback,) = session.recovery["fallbacks"]
    assert fallback["snapshot_id"] == newest.id and fallback["step"] == 225
    assert "cannot decompress" in fallback["error"] or "corrupt" in fallback["error"]
    assert session.snapshot["recovery"] == session.recovery  # in GET /api/v1/status
    _assert_same_as_reference(reference, session, store)
    store.dispose()


def test_with_every_snapshot_unusable_it_replays_everything_and_says_why(
    reference: Reference, caplog: pytest.LogCaptureFixture
) -> None:
    _, store = reference.copy("unusable")
    snapshots = list_snapshots(store)
    with store.transaction() as conn:  # three ways to be unusable, newest first
        conn.execute(
            update(t.snapshots).where(t.snapshots.c.id == snapshots[1].id).values(format=FORMAT + 1)
        )
        conn.execute(update(t.snapshots).where(t.snapshots.c.id == snapshots[2].id).values(step=1))
        conn.execute(delete(t.snapshots).where(t.snapshots.c.id < snapshots[2].id))
    _corrupt(store, snapshots[0].id)
    session = _recover_and_finish(reference, store)
    assert session.recovery["from_snapshot_step"] is None
    assert session.recovery["replayed_steps"] == CUT
    errors = [f["error"] for f in session.recovery["fallbacks"]]
    assert len(errors) == 3
    assert "corrupt" in errors[0] or "cannot decompress" in errors[0]
    assert f"is of format {FORMAT + 1}; this code reads format {FORMAT}" in errors[1]
    assert "its document says step 175" in errors[2]
    logged = [r.getMessage() for r in caplog.records if "not restoring snapshot" in r.getMessage()]
    assert len(logged) == 3
    _assert_same_as_reference(reference, session, store)
    store.dispose()


def test_a_snapshot_taken_under_another_configuration_is_not_restored(
    reference: Reference,
) -> None:
    _, store = reference.copy("config")
    feed = rs.ScheduledFeed(reference.frames, reference.plan, store, gate=CUT)
    config = rs.settings().model_copy(deep=True)
    config.ml.model_root = "elsewhere"  # unused by these strategies: the replay still agrees
    session = TradingSession(
        config, list(rs.SLOTS), feed, store, window=rs.WINDOW, holder="other", snapshot_every=EVERY
    )
    feed.session = session
    session.start()
    try:
        wait_until(lambda: session.state == "running" or not session.alive, "the rebuild")
        assert session.state == "running", session.failure
        assert session.recovery["from_snapshot_step"] is None
        errors = [f["error"] for f in session.recovery["fallbacks"]]
        assert len(errors) == len(list_snapshots(store)) == 9  # every one refused
        assert all("taken under another configuration" in e for e in errors)
    finally:
        session.stop()
    store.dispose()


def test_outputs_changed_after_the_snapshot_fail_the_rebuild_whatever_the_start(
    reference: Reference,
) -> None:
    """The steps replayed after a snapshot are checked against the stored outputs as a full
    replay checks them all: a fill changed after the newest snapshot fails every attempt."""
    _, store = reference.copy("tampered")
    newest = list_snapshots(store)[0]
    marks = JournalMarks(**orjson.loads(load_document(store, newest))["marks"])
    with store.transaction() as conn:
        conn.execute(delete(t.snapshots).where(t.snapshots.c.id < newest.id - 1))
        last = conn.execute(select(t.fills.c.id).order_by(t.fills.c.id.desc()).limit(1))
        last_fill = last.scalar_one()
        assert last_fill > marks.fill_id  # precondition: a fill after the snapshot
        conn.execute(
            update(t.fills).where(t.fills.c.id == last_fill).values(price=t.fills.c.price + 1)
        )
    feed = rs.ScheduledFeed(reference.frames, reference.plan, store)
    session = rs.make_session(store, feed, holder="successor")
    session.start()
    try:
        wait_until(lambda: not session.alive, "the session to give up")
        assert session.state == "failed"
        assert session.failure.startswith("RebuildError: replay does not reproduce the stored")
        steps = [f["step"] for f in session.recovery["fallbacks"]]
        assert steps == [225, 200]
        assert all(
            "does not reproduce the stored fills" in f["error"]
            for f in session.recovery["fallbacks"]
        )
    finally:
        session.stop()
    assert len(StoreReader(store).bar_log()) == CUT  # not one more step traded
    store.dispose()


def test_a_clean_stop_leaves_a_snapshot_of_its_last_step(tmp_path: Path) -> None:
    store = create_store(f"sqlite:///{tmp_path / 's.db'}")
    frames, plan = rs.market(60, 3), rs.command_plan(60, 3)
    feed = rs.ScheduledFeed(frames, plan, store, gate=47)
    session = rs.make_session(store, feed, snapshot_every=20, snapshots_kept=2)
    session.start()
    wait_until(lambda: _held(session, feed, 47) or not session.alive, "step 47")
    session.stop()
    assert [(s.step, s.reason) for s in list_snapshots(store)] == [
        (47, "shutdown"),
        (40, "periodic"),
    ]
    again = rs.make_session(store, rs.ScheduledFeed(frames, plan, store, gate=47), holder="2")
    again.start()
    try:
        wait_until(lambda: again.state == "running" or not again.alive, "the rebuild")
        assert again.recovery["from_snapshot_step"] == 47
        assert again.recovery["replayed_steps"] == 0
    finally:
        again.stop()
    assert len(list_snapshots(store)) == 2  # nothing new to keep: no second shutdown snapshot
    store.dispose()


# -- kill -9 ---------------------------------------------------------------------------------------
def _worker(path: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, str(WORKER), str(path), "--steps", "160", "--seed", "5", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=WORKER.parent,
        )


def _kill_when(worker: subprocess.Popen[bytes], log: Path, seen: Callable[[str], bool]) -> None:
    try:
        wait_until(lambda: seen(log.read_text()) or worker.poll() is not None, "the kill point")
        assert worker.poll() is None, f"the worker ended first:\n{log.read_text()}"
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def _last_step(log: str) -> int:
    steps = [int(line.split()[1]) for line in log.splitlines() if line.startswith("step ")]
    return max(steps, default=-1)


def test_killed_at_random_points_even_mid_snapshot_it_ends_like_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("N1V1_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)  # where it is killed differs from run to run; the seed says where
    reference_path, path = tmp_path / "reference.db", tmp_path / "killed.db"
    log = tmp_path / "worker.log"
    done = subprocess.run(
        [sys.executable, str(WORKER), str(reference_path), "--steps", "160", "--seed", "5"],
        cwd=WORKER.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "done 160" in done.stdout, done.stdout + done.stderr

    # killed inside the transaction of the snapshot at step 40: the step and the snapshot go
    worker = _worker(path, log, "--bars-per-second", "200", "--hold-in-snapshot", "40")
    _kill_when(worker, log, lambda text: "in-snapshot 40" in text)
    store = create_store(f"sqlite:///{path}")
    reader = StoreReader(store)
    assert reader.get_state("last_step")["step"] == 39
    assert [s.step for s in list_snapshots(store)] == [30, 20, 10]

    kills = sorted(rng.sample(range(45, 150), 3))
    for at in kills:  # killed wherever it is once past a random step
        worker = _worker(path, log, "--bars-per-second", "200")
        _kill_when(worker, log, lambda text, at=at: _last_step(text) >= at)
    finish = _worker(path, log)
    assert finish.wait(timeout=120) == 0, log.read_text()
    assert "done 160" in log.read_text()

    reference = create_store(f"sqlite:///{reference_path}")
    assert _outcome(store) == _outcome(reference), f"N1V1_KILL_SEED={seed}: kills at {kills}"
    assert len(list_snapshots(store)) == 3  # snapshots_kept
    store.dispose()
    reference.dispose()


# -- the parts of the state ------------------------------------------------------------------------
def _a_parent() -> ParentOrder:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    lot = Decimal("0.001")
    hour, quarter = pd.Timedelta("1h"), pd.Timedelta("15min")
    return ParentOrder.twap("p", "BTC", Side.BUY, "1", t0, hour, quarter, lot, lot, 100.0)


def test_every_field_of_the_engines_parts_is_known_to_the_snapshot() -> None:
    """A field added to one of these must be kept by n1v1/live/snapshot.py (or be shown there to
    be derived): then add it to this list."""
    known = {
        TradingEngine: "settings journal portfolio venue risk run_id currency sources atr "
        "equity_curve exposure_bars step _states _order_seq _next_open cost_rate algos",
        # _owner is derived from the parents' children; _at_open lives within one bar
        AlgoBook: "engine parents _owner accepted _at_open",
        # dust_rules: the exchange's, stored once in engine_state and set before every replay
        Portfolio: "initial_cash cash positions fees_paid traded_notional closed_trades _open "
        "dust_rules",
        SimulatedVenue: "settings fees slippage affordable_qty _working _fill_seq",
        # outbox, _received and _changed live within one step (sent, applied, journaled by its
        # end); what the exchange said is in venue_events, read again by a new engine
        LiveVenue: "_working _held _fill_seq outbox _received _changed",
        RiskManager: "settings journal breaker daily kill_switch paused_reason _previous_equity",
        BarHistory: "window older_bars _data _times _counts _first _frames",
    }
    settings = rs.settings()
    engine = TradingEngine(settings)
    instances = {
        TradingEngine: engine,
        Portfolio: engine.portfolio,
        SimulatedVenue: engine.venue,
        LiveVenue: LiveVenue(),
        RiskManager: engine.risk,
        BarHistory: BarHistory(10),
        AlgoBook: engine.algos,
    }
    for cls, names in known.items():
        obj = instances[cls]
        fields = set(getattr(obj, "__slots__", ())) or set(vars(obj))
        if hasattr(obj, "__dataclass_fields__"):
            fields = set(obj.__dataclass_fields__)
        assert fields == set(names.split()), cls.__name__
    # a parent's stored form holds every one of its fields
    assert set(parent_to_dict(_a_parent())) == set(ParentOrder.__dataclass_fields__)
    values = {
        _SymbolState: "index intended blocked targets held_bars entry_atr extreme fixed_stop "
        "stop_id take_profit_id last_bar",
        Position: "symbol qty avg_entry realized_pnl last_price",
        _OpenTrade: "trade gross_pnl exit_qty exit_value entry_value",
        Trade: " ".join((*TRADE_FIELDS, "entry_fills")),  # entry_fills: always empty, refused
        Order: " ".join(_order(_an_order()).keys()),
        CircuitBreaker: "settings peak consecutive_losses tripped_at reason",
        DailyLossGuard: "max_daily_loss day day_start_equity last_equity halted",
        KillSwitch: "engaged reason",
    }
    for cls, names in values.items():
        assert set(cls.__dataclass_fields__) == set(names.split()), cls.__name__


def _an_order() -> Order:
    return Order(
        ClientOrderId("x"), Symbol("X"), Side.BUY, 1.0, OrderType.MARKET, pd.Timestamp(0, tz="UTC")
    )


def test_a_restored_bar_history_fetches_older_bars_when_a_strategy_needs_more() -> None:
    times = pd.date_range("2024-01-01", periods=300, freq="1min", tz="UTC")
    rng = np.random.default_rng(0)
    bars = [Bar(ts, *rng.uniform(1, 2, 5)) for ts in times]
    full = BarHistory(50)
    for bar in bars[:200]:
        full.append("X", bar)
    first, stamps, rows = full.tail("X")
    assert (first, len(stamps)) == (150, 50)
    restored = BarHistory(50)
    restored.restore("X", first, stamps, rows)
    asked: list[tuple[pd.Timestamp, int]] = []

    def older(symbol: str, before: pd.Timestamp, count: int) -> list[Bar]:
        asked.append((before, count))
        return [b for b in bars if b.timestamp < before][-count:]

    restored.older_bars = older
    for bar in bars[200:230]:
        assert restored.append("X", bar) == full.append("X", bar)
    pd.testing.assert_frame_equal(restored.frame("X"), full.frame("X"))
    full.widen(120)
    restored.widen(120)
    assert asked == [(times[150], 40)]  # 80 held, 120 wanted
    for bar in bars[230:]:
        restored.append("X", bar)
        full.append("X", bar)
        pd.testing.assert_frame_equal(restored.frame("X"), full.frame("X"))


def test_a_signal_source_gets_its_own_state_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hook for sources that remember more than the bars (StatefulSource): what
    `snapshot_state` gave at the snapshot comes back through `restore_state` by slot id."""
    given: dict[str, Any] = {}
    monkeypatch.setattr(
        RollingTargets, "snapshot_state", lambda self: {"model": f"{self.name}/v0007"}
    )
    monkeypatch.setattr(
        RollingTargets, "restore_state", lambda self, state: given.__setitem__(self.name, state)
    )
    store = create_store(f"sqlite:///{tmp_path / 's.db'}")
    frames, plan = rs.market(30, 3), {}
    first = rs.make_session(store, rs.ScheduledFeed(frames, plan, store), snapshot_every=10)
    first.start()
    wait_until(lambda: first.snapshot.get("step") == 30 or not first.alive, "30 steps")
    first.stop()
    again = rs.make_session(store, rs.ScheduledFeed(frames, plan, store), holder="again")
    again.start()
    try:
        wait_until(lambda: again.state == "replay_finished" or not again.alive, "the rebuild")
        assert again.recovery["from_snapshot_step"] == 30
        assert given == {slot.slot_id: {"model": f"{slot.slot_id}/v0007"} for slot in rs.SLOTS}
    finally:
        again.stop()
    store.dispose()
