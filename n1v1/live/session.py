"""A trading session: the TradingEngine driven by a feed, its every input and outcome in the store.

Restart safety is by construction. The store logs the engine's inputs (each bar step, the model
answers its ml_signal slots traded on (n1v1/live/predictions.py) and each operator command, with
the step it applied before) next to its outputs (orders, fills, signals, risk decisions, equity,
positions), and each step is one fenced transaction. The engine is deterministic, so a new
session rebuilds the exact state of the old one by replaying the logged inputs, checks that the
replay reproduces the stored orders and fills (a mismatch means the code or data changed
underneath it: it refuses to trade and says where), and resumes the feed after the last stored
step. A crash between two steps loses nothing; a crash inside one loses that whole step, which
the feed then hands over again.

Snapshots bound the replay. Every `snapshot_every` steps, in that step's transaction, and at a
clean stop, the session stores its whole state (n1v1/live/snapshot.py); recovery restores the
newest one that loads and checks out and replays only the inputs logged after it, checking those
steps' outputs as above. A snapshot that fails is reported (`recovery` in the status) and the next
older one is tried, then a full replay.

Threads: one loop thread owns the engine. API calls never touch it directly: they queue commands,
which the loop applies between bars, and read the `snapshot` (and the trade list) the loop publishes
after every step.

States: `starting`, `standby` (another engine holds the lease), `running`, `replay_finished` (a
replay feed handed out its last bar: nothing more will happen until the session is stopped),
`store_unavailable` (the database cannot be reached: see below), `failed` (the loop died; the
replica must be replaced) and `stopped`.

A database outage stops trading and nothing else. A step's transaction is all or nothing, so when
the store fails in the middle of a step no order of that step is in the journal, and none reached
the venue: the simulated venue lives in this engine, whose state is now ahead of the store and is
thrown away. The session keeps the bar it could not journal, publishes `store_unavailable` with
why (the status keeps the last committed step's figures), refuses commands with `unavailable`,
and probes the store with a growing pause (0.5 s to 2 s). Once it answers, the session takes over
again exactly as a new replica would (the lease, the schema check, the rebuild from the store)
and processes the kept bar, then the feed's next ones: the journal ends as an uninterrupted run's.
What counts as an outage is decided by n1v1/store/availability.py; an outage that comes straight
back while the store answers its probe is an error in what was asked, and fails the loop after a
few tries.

A strategy that cannot start, such as an `ml_signal` slot whose model is not in the registry yet,
stands aside (target 0, no orders) instead of failing the session; the loop looks for it again every
few seconds and lets it trade from the next step once it can. Which slots stand aside is an input
like a command: it is logged with the step it applies before (`strategy_slots`), so a rebuild lets
each slot trade from exactly the step it did before.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from n1v1.backtest.metrics import trade_stats
from n1v1.config import ConfigError, Settings
from n1v1.domain import Bar, DustRule, Order, OrderStatus, Side, Symbol, Trade
from n1v1.engine.engine import FlattenReport, ManualOrderResult, TradingEngine
from n1v1.engine.journal import InMemoryJournal, Journal
from n1v1.engine.shadows import StrategyShadows
from n1v1.execution.algo_plan import PlanError
from n1v1.execution.algos import ParentStatus, parent_to_dict
from n1v1.execution.instruments import account_currency
from n1v1.execution.live_venue import LiveVenue, VenueEvent
from n1v1.execution.shortfall import aggregate_shortfall
from n1v1.live.algo_commands import AlgoFieldError, algo_request, parent_dict, with_vwap_weights
from n1v1.live.config import LiveConfig, StrategySlot, build_strategies, effective_settings
from n1v1.live.history import BarHistory, RollingTargets
from n1v1.live.predictions import (
    Fallback,
    LocalPredictor,
    ModelTargets,
    PendingPredictions,
    PredictionRecord,
    PredictionRequest,
    Predictor,
)
from n1v1.live.snapshot import FORMAT, TradeRows, check_format, encode, restore
from n1v1.store import (
    LeaseHeldError,
    SqlJournal,
    Store,
    acquire,
    current_lease,
    release,
    renew,
)
from n1v1.store.availability import is_unreachable, probe, unreachable_reason
from n1v1.store.journal import DEFAULT_RESOURCE, order_row
from n1v1.store.schema import check_store
from n1v1.store.snapshots import (
    JournalMarks,
    SnapshotError,
    StoredSnapshot,
    list_snapshots,
    load_document,
)
from n1v1.strategies.base import Strategy, StrategyError
from n1v1.strategies.ml_signal import MLSignal

if TYPE_CHECKING:
    from n1v1.live.broker import ExchangeBroker

log = logging.getLogger(__name__)

Step = tuple[pd.Timestamp, dict[str, Bar]]


class Feed(Protocol):
    symbols: list[str]
    exhausted: bool

    def resume_after(self, last: pd.Timestamp | None) -> None: ...

    def next_step(self, timeout: float) -> Step | None: ...


class CommandError(Exception):
    """A command the session refused; `code` maps to an HTTP status at the API."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code  # not_found | conflict | invalid | unavailable
        self.message = message
        self.details = dict(details or {})


class RebuildError(RuntimeError):
    """Replaying the stored inputs did not reproduce the stored outputs."""


class _SessionEventLog:
    """The broker's EventLog: the session's fenced journal, events for the next step."""

    def __init__(self, session: TradingSession) -> None:
        self.session = session

    def fenced(self) -> AbstractContextManager[None]:
        return self.session._sql.atomic()

    def record_venue_events(self, events: list[VenueEvent]) -> list[VenueEvent]:
        return self.session._sql.record_venue_events(self.session.steps_done, events)

    def stored_trade_ids(self, client_order_id: str) -> set[str]:
        return self.session._sql.stored_trade_ids(client_order_id)


# (the venue, where its events go, a symbol's last close) -> the broker (n1v1/live/connect.py)
BrokerFactory = Callable[
    [LiveVenue, "_SessionEventLog", Callable[[str], "float | None"]], "ExchangeBroker"
]


@dataclass
class _Asked:
    """One bar's questions to the models: the requests sent, the answers still to come, the
    records already known (not ready, no features) and when each part began."""

    began: float
    submitted: float = 0.0
    waiting: float = 0.0
    requests: list[tuple[ModelTargets, PredictionRequest]] = field(default_factory=list)
    records: list[PredictionRecord] = field(default_factory=list)
    pending: PendingPredictions | None = None


@dataclass
class _Pending:
    kind: str
    payload: dict[str, Any]
    actor: str
    future: Future[dict[str, Any]]


COMMANDS = (
    "pause",
    "resume",
    "kill_switch",
    "order",
    "cancel",
    "config",
    "user_config",
    "algo_order",
    "algo_cancel",
)
SLOTS_COMMAND = "strategy_slots"  # logged by the session itself, never submitted by a caller
# Logged by a live session when the exchange's answers wait and no bar comes: the engine applies
# the `count` oldest between bars, and a replay applies the same ones at the same point.
VENUE_COMMAND = "venue_events"
VENUE_RULES = "venue_rules"  # engine_state: the exchange's least tradable quantity and value
VENUE_APPLY_AFTER_S = 0.5  # how long received answers may wait for a bar before that
RECONCILE_RETRY_S = 2.0  # after a reconciliation the exchange did not answer
SETTLE_AT_STOP_S = 3.0  # a live session's clean stop waits this long for its orders' answers
SLOT_RETRY_S = 5.0  # how often a slot that stands aside is tried again
READY_STATES = frozenset({"running", "replay_finished"})  # the loop is up and accepts commands
STORE_UNAVAILABLE = "store_unavailable"
STORE_RETRY_S = (0.5, 2.0)  # the first and the longest pause between two probes of a lost store
# An outage that recurs this many times in a row while the store answers its probe, without one
# step or command getting through in between, is an error in what is asked: the loop fails.
OUTAGE_REPEATS = 5
OUTAGE_REPEAT_WINDOW_S = 30.0  # "in a row": each within this long of the previous recovery


class TradingSession:
    def __init__(
        self,
        settings: Settings,
        slots: list[StrategySlot],
        feed: Feed,
        store: Store,
        *,
        window: int = 500,
        lease_ttl: float = 15.0,
        holder: str | None = None,
        journal_wrapper: Callable[[Journal], Journal] | None = None,
        on_step: Callable[[float, TradingEngine], None] | None = None,
        predictor: Predictor | None = None,
        prediction_timeout_s: float = 0.5,
        on_prediction_failure: Fallback = "hold",
        on_predictions: Callable[[list[PredictionRecord]], None] | None = None,
        snapshot_every: int = 1000,
        snapshots_kept: int = 3,
        broker: BrokerFactory | None = None,
        poll_s: float = 2.0,
        reconcile_s: float = 60.0,
    ) -> None:
        if snapshot_every < 0 or snapshots_kept < 1:
            raise ConfigError(
                f"snapshots: every {snapshot_every} steps (>= 0, 0: none) keeping "
                f"{snapshots_kept} (>= 1)"
            )
        if not slots:
            raise ConfigError("strategies: a session needs at least one strategy")
        ids = [s.slot_id for s in slots]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"strategies: ids must be unique, got {ids} (set `id` to tell apart)")
        # One account, one currency: a feed mixing quote currencies is refused here, by name.
        self.currency = account_currency(settings.backtest.currency, feed.symbols)
        self.base_settings = settings
        self.slots = slots
        self.feed = feed
        self.store = store
        self.window = window
        self.lease_ttl = lease_ttl
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._journal_wrapper = journal_wrapper
        self._on_step = on_step
        # ml_signal slots: their models answer through the predictor (n1v1/live/predictions.py);
        # without one (no Ray Serve), the models run in this process on the same code path.
        self._predictor = predictor
        self.prediction_timeout_s = prediction_timeout_s
        self.on_prediction_failure: Fallback = on_prediction_failure
        self._on_predictions = on_predictions
        self._predict_phases: tuple[float, float, float] = (0.0, 0.0, 0.0)
        self.step_phases: dict[str, float] = {}  # the last step's seconds per phase
        self._commands: queue.Queue[_Pending] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "starting"  # see the module docstring for every state
        self.failure = ""
        self.heartbeat = time.monotonic()
        # the store as this session last met it (the status's `store`; see the module docstring)
        self.store_available = True
        self.store_outages = 0
        self._outage_since: pd.Timestamp | None = None
        self._outage_started = 0.0
        self.last_outage_s: float | None = None
        self._outage_repeats = 0
        self._recovered_at = 0.0
        self._held_step: Step | None = None  # the bar a lost store could not journal
        self.snapshot: dict[str, Any] = {"state": self.state, "store": self.store_status()}
        self._lease = None
        self._user_config: dict[str, Any] | None = None
        self._trades_closed: list[dict[str, Any]] = []  # published; append-only per engine
        self._trades_open: list[dict[str, Any]] = []  # published; replaced every step
        self._trades_engine: TradingEngine | None = None
        self._trades_summary: dict[str, Any] | None = None  # of the published closed trades
        self._slots_checked = 0.0
        self.snapshot_every, self.snapshots_kept = snapshot_every, snapshots_kept
        self._trade_rows = TradeRows()  # closed trades encoded once for the snapshots
        self._snapshot_marks: JournalMarks | None = None  # of the newest snapshot we know of
        self.recovery: dict[str, Any] = {}  # how the last rebuild went (the status shows it)
        self._skipped_commands: list[dict[str, Any]] = []  # by the last replay, and why
        self.last_snapshot: dict[str, Any] = {}  # the newest snapshot this session wrote
        # A live venue (n1v1/live/broker.py): orders go to an exchange, its answers are inputs.
        self._broker_factory = broker
        self.broker: ExchangeBroker | None = None
        self.poll_s = poll_s
        self._last_poll = 0.0
        self._answers_since = 0.0  # when the oldest answer not applied yet arrived
        self.reconcile_s = reconcile_s
        self._last_reconcile = 0.0
        self.reconciliation: dict[str, Any] | None = None  # the last check against the exchange
        self.last_step_at: pd.Timestamp | None = None  # wall clock of this process's last step
        self._reset_engine()

    # -- building the engine -----------------------------------------------------------------------
    def _reset_engine(self) -> None:
        self.live = LiveConfig()
        self.settings = effective_settings(self.base_settings, self.live)
        self.aside: dict[str, str] = {}  # slot id -> why it stands aside (as logged so far)
        strategies = self._live_strategies()
        warmups = [w for s in strategies.values() if (w := _warmup(s)) is not None]
        self.history = BarHistory(max(self.window, 4 * max(warmups, default=1) + 1))
        venue = LiveVenue() if self._broker_factory is not None else None
        self.engine = TradingEngine(
            self.settings, journal=InMemoryJournal(keep_equity=True), venue=venue
        )
        self._algo_written: dict[str, str] = {}  # parent id -> status as last written
        self.shadows: StrategyShadows | None = None
        self._install_strategies(strategies)
        # Each strategy's own P&L: a shadow account per strategy (n1v1/engine/shadows.py).
        self.shadows = StrategyShadows(self.settings, self.engine.sources, atr=self.engine.atr)
        self.steps_done = 0
        self.last_ts: pd.Timestamp | None = None
        self.last_bars: dict[str, Bar] = {}

    def _install_strategies(self, strategies: Mapping[str, Strategy] | None = None) -> None:
        """The engine's signal sources: every slot's strategy except those standing aside."""
        if strategies is None:
            strategies = self._live_strategies()
        previous = {s.name: s for s in self.engine.sources if isinstance(s, ModelTargets)}
        allow_short = self.settings.risk.allow_short
        sources: list[RollingTargets | ModelTargets] = []
        # every parameter each slot trades with, defaults included (the dashboard's form)
        self.effective_params = {
            slot_id: strategy.params.model_dump(mode="json")
            for slot_id, strategy in strategies.items()
        }
        for slot_id, strategy in strategies.items():
            if slot_id in self.aside:
                continue
            if isinstance(strategy, MLSignal):
                source = ModelTargets(
                    strategy, self.history, allow_short, slot_id, self.on_prediction_failure
                )
                if slot_id in previous:  # new parameters; the version in use and held targets stay
                    source.carry_over(previous[slot_id])
                source.on_switch = _log_switch
                sources.append(source)
            else:
                sources.append(RollingTargets(strategy, self.history, allow_short, name=slot_id))
        self.engine.sources = sources
        if self.shadows is not None:
            self.shadows.set_sources(self.engine.sources)

    def _live_strategies(self) -> dict[str, Strategy]:
        """The slots' strategies; an ml_signal reads its model's card only: the predictor runs
        the model."""
        strategies = build_strategies(self.slots, self.live, self.settings)
        for strategy in strategies.values():
            if isinstance(strategy, MLSignal):
                strategy.use_card_only()
        return strategies

    # -- strategies that stand aside ---------------------------------------------------------------
    def _slot_problems(self, slot_ids: list[str]) -> dict[str, str]:
        """Why each of these slots cannot start now (a slot that can is left out)."""
        strategies = self._live_strategies()
        problems = {}
        for slot in self.slots:
            if slot.slot_id not in slot_ids:
                continue
            try:
                strategies[slot.slot_id].warmup  # noqa: B018 (loads what the strategy needs)
            except Exception as exc:  # shown in the status and logged: a model half-written, too
                problems[slot.slot_id] = _aside_reason(slot, self.settings, exc)
        return problems

    def _refresh_slots(self, everything: bool = False) -> None:
        """Log a change of the slots standing aside, effective from the next step. `everything`
        (on taking over an empty session) checks every slot; otherwise only those already aside
        are tried again: a slot that traded keeps its loaded model."""
        self._slots_checked = time.monotonic()
        candidates = [s.slot_id for s in self.slots] if everything else list(self.aside)
        problems = self._slot_problems(candidates)
        aside = {k: v for k, v in self.aside.items() if k in problems}
        aside.update(problems)
        if set(aside) == set(self.aside):
            if aside != self.aside:  # the same slots, a newer reason (a model being written)
                self.aside = aside
                self._publish()
            return
        now = pd.Timestamp.now(tz="UTC").floor("us")
        payload = {"aside": aside}
        with self._sql.atomic():
            self._sql.record_command(self.steps_done, SLOTS_COMMAND, payload, "engine", now)
            self._set_aside(aside)
        self._publish()

    def _set_aside(self, aside: Mapping[str, str]) -> None:
        """Apply a logged `strategy_slots` input (live, or replayed by the rebuild)."""
        joining = set(self.aside) - set(aside)
        for slot_id, reason in aside.items():
            if slot_id not in self.aside:
                log.warning("strategy %s: %s", slot_id, reason)
        self.aside = dict(aside)
        self._install_strategies()
        for source in self.engine.sources:
            if source.name in joining:
                warmup = _warmup(source.strategy) or 0
                self.history.widen(4 * warmup + 1)
                log.info("strategy %s starts trading at step %d", source.name, self.steps_done)

    def _replay_command(self, command: Mapping[str, Any]) -> None:
        """Apply a logged input again. A logged settings change that today's settings model
        refuses (an infinity or an out-of-bounds number an older version let in) is skipped, as
        it would be refused now, and reported: replaying it would bring the bad value back on
        every restart. If outputs depended on it, the check of the replay says so."""
        kind, payload = command["kind"], command["payload"]
        if kind == SLOTS_COMMAND:
            self._set_aside(payload["aside"])
            return
        if kind == VENUE_COMMAND:
            self.engine.on_venue_events(limit=int(payload["count"]))
            return
        if kind in ("config", "user_config"):
            try:
                self._validate(kind, payload)
            except CommandError as exc:
                log.warning(
                    "replay: skipping the %s command before step %d: %s", kind, command["step"], exc
                )
                self._skipped_commands.append(
                    {"step": command["step"], "kind": kind, "error": exc.message}
                )
                return
        self._apply(kind, payload)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loop thread (it takes the lease, rebuilds from the store, then trades). Once:
        a second loop on the same session would step the same engine twice."""
        if self._thread is not None:
            raise RuntimeError("this session was started already; a stopped one is not restarted")
        self._thread = threading.Thread(target=self._run, name="n1v1-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        close = getattr(self._predictor, "close", None)
        if callable(close):
            close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    if self._lease is None and not self._try_take_over():
                        self._publish()
                        self._stop.wait(1.0)
                        continue
                    self._trade()
                except Exception as exc:
                    if not is_unreachable(exc):
                        raise
                    self._store_lost(exc)
                    self._await_store()
            if self._lease is not None:
                self._settle_venue()
                self._snapshot_at_stop()
            self.state = "stopped"
            if self._lease is not None:
                self._release()
        except Exception as exc:  # crash-only: the store is consistent; a new session rebuilds
            self.state = "failed"
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("engine loop failed; the replica must be replaced: %s", self.failure)
        finally:
            if self.store_available:
                self._publish()
            else:  # the engine is ahead of the store: keep the last committed step's figures
                self._publish_state()
            self._fail_pending()

    def _release(self) -> None:
        """Give the lease back at a clean stop; with the store gone, it expires by itself."""
        assert self._lease is not None
        try:
            release(self.store, self._lease)
        except Exception as exc:
            if not is_unreachable(exc):
                raise
            log.warning(
                "lease not released, the store is unreachable (%s): it expires at %s",
                unreachable_reason(exc),
                self._lease.expires_at.isoformat(),
            )

    def _trade(self) -> None:
        """The loop while the lease is held: commands, slots, bars; returns when stopped."""
        renew_every = self.lease_ttl / 3
        last_renew = time.monotonic()
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            if self.heartbeat - last_renew >= renew_every:
                assert self._lease is not None
                self._lease = renew(self.store, self._lease, self.lease_ttl)
                last_renew = self.heartbeat
            self._drain_commands()
            self._talk_to_exchange()
            if self.aside and self.heartbeat - self._slots_checked >= SLOT_RETRY_S:
                self._refresh_slots()
            if self.broker is not None and self.reconciliation is None:
                self._stop.wait(0.05)  # live: the books are checked against the exchange first
                continue
            step = self._held_step or self.feed.next_step(timeout=0.05)
            if step is not None:
                self._held_step = step  # until its transaction commits
                self._process_step(*step)
                self._held_step = None
                self._talk_to_exchange()
                self._outage_repeats = 0
            elif self.feed.exhausted:
                if self.state != "replay_finished":
                    self.state = "replay_finished"
                    log.info("replay finished at step %d (%s)", self.steps_done, self.last_ts)
                    self._publish()
                self._stop.wait(0.05)

    def _last_close(self, symbol: str) -> float | None:
        """A market order's reference price at the exchange: the last close the engine saw."""
        bar = self.last_bars.get(symbol)
        return None if bar is None else bar.close

    def _talk_to_exchange(self) -> None:
        """Live venue: send what the last transactions queued (they have committed: intent first),
        and every `poll_s` read what happened to the working orders."""
        if self.broker is None:
            return
        self.broker.dispatch()
        now = time.monotonic()
        if now - self._last_poll >= self.poll_s:
            self._last_poll = now
            self.broker.poll()
        if now - self._last_reconcile >= self.reconcile_s:
            self._reconcile()
        venue = self.engine.venue
        assert isinstance(venue, LiveVenue)
        waiting = venue.waiting()
        if not waiting:
            self._answers_since = 0.0
        elif not self._answers_since:
            self._answers_since = now
        elif now - self._answers_since >= VENUE_APPLY_AFTER_S and self.last_ts is not None:
            # no bar came: apply them now, as a logged command (the replay does the same)
            self._commit_command(VENUE_COMMAND, {"count": waiting}, "exchange")
            self._answers_since = 0.0
            self._publish()
            self.broker.dispatch()  # e.g. the rest of a reversal, decided as the fills landed

    def _settle_venue(self) -> None:
        """A clean stop of a live session first reads what happened to the orders it sent and
        books it (at most `SETTLE_AT_STOP_S`), so it leaves nothing in flight when the exchange
        answers in time; what is left is looked up by client id by the next engine."""
        if self.broker is None:
            return
        venue = self.engine.venue
        assert isinstance(venue, LiveVenue)
        deadline = time.monotonic() + SETTLE_AT_STOP_S
        try:
            while (venue.in_flight() or venue.waiting()) and time.monotonic() < deadline:
                self._last_poll = 0.0  # read now
                self._talk_to_exchange()
                time.sleep(0.05)
        except Exception as exc:  # the store or the exchange gone: the next engine finds them
            log.warning("stopping with orders in flight: %s", exc)

    def _reconcile(self) -> None:
        """Check the books against the exchange (n1v1/live/broker.py `reconcile`) when nothing is
        in flight (a fill read but not applied yet is no disagreement); a disagreement pauses
        trading, as an operator's pause would, with the reason, until an operator resumes."""
        assert self.broker is not None
        venue = self.engine.venue
        assert isinstance(venue, LiveVenue)
        if venue.in_flight() or venue.waiting():
            return  # again at the next turn of the loop
        self._last_reconcile = time.monotonic()
        positions = {
            symbol: self.engine.portfolio.position(Symbol(symbol)).qty
            for symbol in self.feed.symbols
        }
        try:
            baseline = self._venue_baseline(positions)
            # nothing of ours is working now: every open order at the exchange is someone else's
            report = self.broker.reconcile(positions, baseline, ours=set())
        except Exception as exc:  # the exchange did not answer: again in a few seconds
            if is_unreachable(exc):
                raise  # the store is gone: the loop waits for it (module docstring)
            log.warning("reconciliation not done: %s: %s", type(exc).__name__, exc)
            self._last_reconcile -= max(0.0, self.reconcile_s - RECONCILE_RETRY_S)
            return
        self.reconciliation = report
        if not report["ok"]:
            reason = "reconciliation: " + "; ".join(report["problems"])
            log.error("%s", reason)
            if self.engine.risk.paused_reason != reason:
                self._commit_command("pause", {"reason": reason}, "reconciliation")
        self._publish()

    def _store_dust_rules(self) -> None:
        """The exchange's least tradable quantity and value per symbol, read once and stored:
        the books call a position below them dust (docs/live.md, "Dust"), and a rebuild must
        decide with the same rules the session traded under, whatever the exchange says later."""
        assert self.broker is not None
        stored = dict(self._sql.get_state(VENUE_RULES) or {})
        missing = [s for s in self.feed.symbols if s not in stored]  # e.g. a symbol added
        if not missing:
            return
        for symbol in missing:
            rule = self.broker.dust_rule(symbol)
            stored[symbol] = [rule.min_qty, rule.min_cost]
        with self._sql.atomic():
            self._sql.set_state(VENUE_RULES, stored)
        self.engine.portfolio.dust_rules = _dust_rules(stored)

    def _venue_baseline(self, positions: Mapping[str, float]) -> dict[str, float]:
        """Each traded base asset's balance before the session's first order, stored once (a
        store that traded before this was kept derives it from today's balance and position)."""
        assert self.broker is not None
        stored = self._sql.get_state("venue_baseline")
        if stored is not None:
            return {str(k): float(v) for k, v in stored.items()}
        balances = self.broker.balances()
        baseline = {}
        for symbol, qty in positions.items():
            base = symbol.split("/")[0]
            baseline[base] = balances.get(base, 0.0) - qty
        with self._sql.atomic():
            self._sql.set_state("venue_baseline", baseline)
        return baseline

    # -- a lost store ------------------------------------------------------------------------------
    def store_status(self) -> dict[str, Any]:
        """The status's `store`: reachable or not, since when, why, and the outages so far."""
        return {
            "available": self.store_available,
            "unavailable_since": None
            if self._outage_since is None
            else self._outage_since.isoformat(),
            "outages": self.store_outages,
            "last_outage_s": self.last_outage_s,
        }

    def _store_lost(self, exc: Exception) -> None:
        """Stop trading: the lease and the engine's state are unknown until the store answers."""
        reason = unreachable_reason(exc)
        if self.store_available:
            self.store_available = False
            self.store_outages += 1
            self._outage_since = pd.Timestamp.now(tz="UTC").floor("us")
            self._outage_started = time.monotonic()
            log.warning(
                "store unreachable: trading stopped at step %d (the bar of %s is kept): %s",
                self.steps_done,
                None if self._held_step is None else self._held_step[0],
                reason,
            )
        if time.monotonic() - self._recovered_at > OUTAGE_REPEAT_WINDOW_S:
            self._outage_repeats = 0
        self._outage_repeats += 1
        if self._outage_repeats > OUTAGE_REPEATS:
            raise RuntimeError(
                f"the store answers, but the same step failed {OUTAGE_REPEATS} times in a row "
                f"with: {reason}"
            ) from exc
        self._lease = None
        self.state = STORE_UNAVAILABLE
        self.failure = self._outage_reason(reason)
        self._publish_state()
        self._fail_pending()

    def _outage_reason(self, reason: str) -> str:
        assert self._outage_since is not None
        held = "" if self._held_step is None else f"; the bar of {self._held_step[0]} is kept"
        return (
            f"the store is unreachable since {self._outage_since.isoformat()} ({reason}): no "
            f"trading until it answers; the engine then rebuilds from it (last committed step "
            f"{self.snapshot.get('step', 0)}{held})"
        )

    def _await_store(self) -> None:
        """Probe the store, pausing longer each time, until it answers (or the session stops)."""
        pause = STORE_RETRY_S[0]
        while not self._stop.wait(pause):
            self.heartbeat = time.monotonic()
            problem = probe(self.store)
            if problem is None:
                self.store_available = True
                self.last_outage_s = round(time.monotonic() - self._outage_started, 3)
                self._outage_since = None
                self._recovered_at = time.monotonic()
                log.info("store reachable again after %.1f s: taking over", self.last_outage_s)
                return
            self.failure = self._outage_reason(problem)
            self._publish_state()
            pause = min(2 * pause, STORE_RETRY_S[1])

    def _publish_state(self) -> None:
        """Publish the state, why and the store's status over the last published figures, which
        are those of the last committed step (the engine's own may be ahead of the store)."""
        self.snapshot = {
            **self.snapshot,
            "state": self.state,
            "failure": self.failure,
            "store": self.store_status(),
        }

    def _try_take_over(self) -> bool:
        try:
            self._lease = acquire(self.store, DEFAULT_RESOURCE, self.holder, self.lease_ttl)
        except LeaseHeldError as exc:
            if self.state != "standby":
                log.warning("standing by: %s", exc)
            self.state = "standby"
            self.failure = str(exc)
            return False
        self.failure = ""
        check_store(self.store)  # a store opened during an outage, or restored from a backup
        self._rebuild()
        journal: Journal = SqlJournal(self.store, self._lease.token)
        self._sql = journal
        if self._journal_wrapper is not None:
            journal = self._journal_wrapper(journal)
        self.engine.journal = journal
        self.engine.risk.journal = journal
        self.feed.resume_after(self.last_ts)
        if self._broker_factory is not None:
            venue = self.engine.venue
            assert isinstance(venue, LiveVenue)
            self.broker = self._broker_factory(venue, _SessionEventLog(self), self._last_close)
            self._store_dust_rules()
            self.broker.poll()  # orders left in flight by the last engine: found, or not
            self._last_poll = time.monotonic()
            self.reconciliation = None  # no bar is traded until the first check has run
            self._last_reconcile = 0.0
        self.state = "running"
        self._refresh_slots(everything=self.steps_done == 0)
        if self._user_config is not None:
            self._apply_user_config_if_new(self._user_config)
        self._publish()
        log.info(
            "trading: holder=%s token=%s step=%s", self.holder, self._lease.token, self.steps_done
        )
        return True

    # -- rebuild -----------------------------------------------------------------------------------
    def _rebuild(self) -> None:
        """Restore the newest snapshot that loads and checks out (none: a fresh engine), replay
        the stored inputs after it, and check the replay reproduces the stored outputs. A snapshot
        failing any of it is reported and the next older one tried, then a full replay, whose
        failure (RebuildError) stops the session."""
        started = time.perf_counter()
        reader = SqlJournal(self.store, -1)  # reads only; a write would fail the fence
        fallbacks: list[dict[str, Any]] = []
        for stored in [*list_snapshots(self.store), None]:
            try:
                marks = self._restore(stored)
                replayed = self._replay(reader, marks)
                self._verify(reader, marks)
            except (SnapshotError, RebuildError) as exc:
                if stored is None:
                    self.recovery = _recovery(None, 0, started, fallbacks)
                    raise
                log.error("not restoring snapshot %d (step %d): %s", stored.id, stored.step, exc)
                fallbacks.append({"snapshot_id": stored.id, "step": stored.step, "error": str(exc)})
                continue
            self._snapshot_marks = marks if stored is not None else None
            self.recovery = _recovery(stored, replayed, started, fallbacks)
            self.recovery["skipped_commands"] = self._skipped_commands
            log.info("recovered: %s", self.recovery)
            self._check_trading_slots()
            return

    def _check_trading_slots(self) -> None:
        """Each slot trading in the rebuilt state can go on (a snapshot restores it without
        asking its strategy anything; without this a missing input would fail the next bar).
        Before the first step no slot has traded: `_refresh_slots` sets aside those that cannot.
        An ml_signal slot is not asked: a model it cannot read is an input like any other, an
        `error` record from the next bar, and its fallback decides (n1v1/live/predictions.py)."""
        if self.steps_done == 0:
            return
        for source in self.engine.sources:
            strategy = getattr(source, "strategy", None)
            if strategy is None or isinstance(source, ModelTargets):
                continue
            try:
                strategy.warmup  # noqa: B018 (loads what the strategy needs)
            except Exception as exc:
                raise RebuildError(
                    f"strategy {source.name}: {exc}. The stored session traded with this "
                    "strategy, so it cannot be replayed without it: restore what it needs, or "
                    "start a new store"
                ) from None

    def _restore(self, stored: StoredSnapshot | None) -> JournalMarks:
        """Set the session to a stored snapshot's state (None: the empty start)."""
        if stored is None:
            self._reset_engine()
            return JournalMarks()
        check_format(stored)  # before reading a document this code cannot use
        return restore(self, load_document(self.store, stored), stored)

    def _replay(self, reader: SqlJournal, marks: JournalMarks) -> int:
        """Replay the inputs logged after `marks` (the bar steps from its step, the commands
        after its command); returns the number of steps replayed."""
        self._skipped_commands = []
        bar_log = reader.bar_log(marks.step)
        commands = reader.commands(marks.command_id)
        logged = reader.predictions(after_step=marks.step - 1)  # model answers: inputs too
        heard = reader.venue_events(marks.step)  # what a live exchange said: inputs too
        venue = self.engine.venue
        if isinstance(venue, LiveVenue):  # the exchange's minimums, stored once: inputs too
            self.engine.portfolio.dust_rules = _dust_rules(reader.get_state(VENUE_RULES))
        if heard and not isinstance(venue, LiveVenue):
            raise RebuildError(
                "the store holds a live venue's events: this session traded at an exchange, so "
                "it rebuilds only with the same live venue configured (docs/live.md)"
            )
        by_step: dict[int, list[dict[str, Any]]] = {}
        for command in commands:
            if command["step"] < marks.step:
                raise RebuildError(
                    f"a command logged after the snapshot applies before its step {marks.step}"
                )
            by_step.setdefault(command["step"], []).append(command)
        for step, ts, bars in bar_log:
            if step != self.steps_done:
                raise RebuildError(f"bar log: expected step {self.steps_done}, found {step}")
            if isinstance(venue, LiveVenue):
                venue.receive(heard.pop(step, []))  # before the step's commands: one applies some
            for command in by_step.pop(step, []):
                self._replay_command(command)
            try:
                indexed = self._append_bars(bars)
                records = [PredictionRecord.from_row(r) for r in logged.pop(step, [])]
                self._receive_predictions(indexed, records)
                self._advance(ts, bars, indexed)
            except StrategyError as exc:
                raise RebuildError(
                    f"step {step}: {exc}. The stored session traded with this strategy, so it "
                    "cannot be replayed without it: restore what it needs, or start a new store"
                ) from None
        if isinstance(venue, LiveVenue):
            # heard after the last stored step: the commands below or the next step apply them
            for step in sorted(heard):
                venue.receive(heard[step])
        for command in by_step.pop(self.steps_done, []):
            self._replay_command(command)
        if isinstance(venue, LiveVenue):
            venue.take_outbox()  # the replay's orders were sent (or not) before: found by id
        if by_step:
            raise RebuildError(f"commands logged for steps {sorted(by_step)} beyond the bar log")
        return len(bar_log)

    def _verify(self, reader: SqlJournal, marks: JournalMarks) -> None:
        """The replayed steps' fills and orders are the stored ones (those after `marks`)."""
        journal = self.engine.journal
        assert isinstance(journal, InMemoryJournal)
        stored_fills = [
            (f.client_order_id, f.seq, f.qty, f.price, f.fee) for f in reader.fills(marks.fill_id)
        ]
        replayed = [(f.client_order_id, f.seq, f.qty, f.price, f.fee) for f in journal.fills]
        if stored_fills != replayed:
            first = next(
                (i for i, (a, b) in enumerate(zip(stored_fills, replayed, strict=False)) if a != b),
                min(len(stored_fills), len(replayed)),
            )
            where = stored_fills[first] if first < len(stored_fills) else replayed[first]
            raise RebuildError(
                f"replay does not reproduce the stored fills: {len(stored_fills)} stored, "
                f"{len(replayed)} replayed, first difference at fill #{first} "
                f"({where[0]}#{where[1]}); refusing to trade"
            )
        stored = {
            k: (o.status, o.filled_qty)
            for k, o in reader.orders_changed_after(marks.order_event_id).items()
        }
        rebuilt = {k: (o.status, o.filled_qty) for k, o in journal.latest_orders().items()}
        if stored != rebuilt:
            diff = sorted(set(stored.items()) ^ set(rebuilt.items()))[:3]
            raise RebuildError(f"replay does not reproduce the stored orders (e.g. {diff})")

    # -- the step ----------------------------------------------------------------------------------
    def _append_bars(self, bars: Mapping[str, Bar]) -> dict[Symbol, tuple[int, Bar]]:
        indexed: dict[Symbol, tuple[int, Bar]] = {}
        for symbol, bar in bars.items():
            index = self.history.append(symbol, bar)
            if self.settings.risk.uses_atr:
                self._extend_atr(symbol, index)
            indexed[Symbol(symbol)] = (index, bar)
        return indexed

    def _model_sources(self) -> list[ModelTargets]:
        return [s for s in self.engine.sources if isinstance(s, ModelTargets)]

    def _ask_models(self, indexed: Mapping[Symbol, tuple[int, Bar]]) -> _Asked:
        """Ask the models of every ml_signal slot about this bar in one go and compute the other
        strategies while they answer; `_collect` waits for the answers."""
        asked = _Asked(began=time.perf_counter())
        sources = self._model_sources()
        for source in sources:
            for symbol in indexed:
                try:
                    requests, not_ready = source.requests(symbol)
                except Exception as exc:  # no features: an input too, never a crashed engine
                    asked.records.append(source.failed(symbol, exc))
                    continue
                asked.requests.extend((source, r) for r in requests)
                if not_ready is not None:
                    asked.records.append(not_ready)
        asked.submitted = time.perf_counter()
        if asked.requests:
            if self._predictor is None:
                self._predictor = LocalPredictor(self.settings.ml.model_root)
            asked.pending = self._predictor.submit([r for _, r in asked.requests])
            for source in self.engine.sources:  # the rule strategies' targets, meanwhile
                if not isinstance(source, ModelTargets):
                    for symbol, (index, _) in indexed.items():
                        source.target(symbol, index)
        return asked

    def _collect(self, asked: _Asked) -> list[PredictionRecord]:
        """Every slot's record of this bar (module predictions), waiting for the answers at most
        the prediction budget."""
        asked.waiting = time.perf_counter()
        if asked.pending is None:
            self._predict_phases = (asked.began, asked.submitted - asked.began, 0.0)
            return asked.records
        answers = asked.pending.wait(self.prediction_timeout_s)
        answered = time.perf_counter()
        # (start, features + requests, the wait beyond what the step did meanwhile)
        self._predict_phases = (
            asked.began,
            asked.submitted - asked.began,
            answered - asked.waiting,
        )
        ms = (answered - asked.submitted) * 1000.0
        records = list(asked.records)
        for (source, request), answer in zip(asked.requests, answers, strict=True):
            records.append(source.record_for(request, answer, ms))
        return records

    def _predict(self, indexed: Mapping[Symbol, tuple[int, Bar]]) -> list[PredictionRecord]:
        return self._collect(self._ask_models(indexed))

    def _receive_predictions(
        self, indexed: Mapping[Symbol, tuple[int, Bar]], records: list[PredictionRecord]
    ) -> None:
        by_slot = {s.name: s for s in self._model_sources()}
        for record in records:
            source = by_slot.get(record.slot)
            if source is not None:
                source.receive(indexed[Symbol(record.symbol)][0], record, self.steps_done)

    def step_without_store(self, ts: pd.Timestamp, bars: Mapping[str, Bar]) -> None:
        """A step's decisions alone, on an unstarted session (its in-memory journal): history,
        model answers, engine. What benchmarks time as "the decision"."""
        indexed = self._append_bars(bars)
        self._receive_predictions(indexed, self._predict(indexed))
        self._advance(ts, bars, indexed)

    def _advance(
        self, ts: pd.Timestamp, bars: Mapping[str, Bar], indexed: dict[Symbol, tuple[int, Bar]]
    ) -> None:
        self.engine.on_venue_events()  # what the exchange said since the last step (live)
        self.engine.on_bar(ts, indexed)
        assert self.shadows is not None
        self.shadows.on_bar(ts, indexed)
        self.steps_done += 1
        self.last_ts = ts
        self.last_bars.update(bars)

    def _extend_atr(self, symbol: str, index: int) -> None:
        values = self.engine.atr.get(Symbol(symbol))
        if values is None or len(values) <= index:
            grown = np.full(max(1024, 2 * (index + 1)), np.nan)
            if values is not None:
                grown[: len(values)] = values
            self.engine.atr[Symbol(symbol)] = values = grown
        values[index] = self.history.atr(symbol, self.settings.risk.atr_period)

    def _process_step(self, ts: pd.Timestamp, bars: dict[str, Bar]) -> None:
        unknown = set(bars) - set(self.feed.symbols)
        if unknown:
            raise ValueError(f"feed returned bars for symbols it does not carry: {sorted(unknown)}")
        if self.last_ts is not None and ts <= self.last_ts:
            return  # already processed (a feed re-delivering after a restart)
        started = time.perf_counter()
        indexed = self._append_bars(bars)
        asked = self._ask_models(indexed)
        try:
            # The fenced BEGIN and the bar rows while the replicas compute. The wait holds the
            # lease row shared (a takeover waits at most the prediction budget), never another
            # strategy; a failure from here on fails the loop, which rebuilds from the store.
            opening = time.perf_counter()
            with self._sql.atomic():
                self._sql.record_bars(self.steps_done, bars)
                records = self._collect(asked)
                predicted = time.perf_counter()
                self._receive_predictions(indexed, records)
                self._sql.record_predictions(self.steps_done, [r.to_row() for r in records])
                logged = time.perf_counter()
                self._advance(ts, bars, indexed)
                decided = time.perf_counter()
                self._sql.write_positions(self.engine.portfolio, ts)
                self._write_algo_orders(ts)
                self._sql.set_state("last_step", {"step": self.steps_done, "time": ts.isoformat()})
                if self.snapshot_every and self.steps_done % self.snapshot_every == 0:
                    self._write_snapshot("periodic")
        except BaseException:
            if asked.pending is not None:
                asked.pending.cancel()  # no one reads these answers now
            raise
        # where the step's time went (bench/decisions.py reads it from on_step)
        self.step_phases = {
            "history": self._predict_phases[0] - started if records else 0.0,
            "features": self._predict_phases[1] if records else 0.0,
            "model_wait": self._predict_phases[2] if records else 0.0,
            # the fenced BEGIN, the bars and the answers: the wait left out
            "journal_inputs": (asked.waiting - opening) + (logged - predicted),
            "decide": decided - logged,
            "store_commit": time.perf_counter() - decided,
            "step": time.perf_counter() - started,
        }
        if self._on_step is not None:
            self._on_step(decided - started, self.engine)
        if self._on_predictions is not None and records:
            self._on_predictions(records)
        self.last_step_at = pd.Timestamp.now(tz="UTC").floor("ms")
        self._publish()

    # -- snapshots ---------------------------------------------------------------------------------
    def _write_snapshot(self, reason: str) -> None:
        """Store the session's state in the open step's transaction (or one of its own)."""
        started = time.perf_counter()
        with self._sql.atomic():
            marks = self._sql.journal_marks(self.steps_done)
            try:
                document = encode(self, marks, self._trade_rows)
            except Exception as exc:  # a bug in the encoder must not stop trading; shown, logged
                self.last_snapshot = {**self.last_snapshot, "error": f"{type(exc).__name__}: {exc}"}
                log.exception("no snapshot at step %d", self.steps_done)
                return
            stored = self._sql.record_snapshot(
                self.steps_done, FORMAT, reason, document, self.snapshots_kept
            )
        self._snapshot_marks = marks
        self.last_snapshot = {
            "step": stored.step,
            "reason": reason,
            "bytes": stored.size,
            "seconds": round(time.perf_counter() - started, 4),
            "error": "",
        }

    def _snapshot_at_stop(self) -> None:
        """A clean stop leaves a snapshot of the last step, so the next engine replays nothing
        (unless the newest snapshot already is of this very point)."""
        if not self.snapshot_every or self.steps_done == 0:
            return
        try:
            if self._sql.journal_marks(self.steps_done) != self._snapshot_marks:
                self._write_snapshot("shutdown")
        except Exception:  # the next engine replays from an older snapshot instead
            log.exception("no snapshot at stop (step %d)", self.steps_done)

    # -- commands ----------------------------------------------------------------------------------
    def submit(self, kind: str, payload: Mapping[str, Any], actor: str) -> Future[dict[str, Any]]:
        """Queue a command for the loop; the future holds its result or a CommandError."""
        future: Future[dict[str, Any]] = Future()
        if kind not in COMMANDS:
            future.set_exception(CommandError("invalid", f"unknown command {kind!r}"))
        elif self.state not in READY_STATES:
            future.set_exception(
                CommandError("unavailable", f"engine is {self.state}; {self.failure}".rstrip("; "))
            )
        elif self.state == "replay_finished" and kind in ("order", "algo_order"):
            future.set_exception(
                CommandError(
                    "conflict",
                    f"the replay has finished (last bar {self.last_ts}): no later bar can fill "
                    "an order",
                )
            )
        else:
            self._commands.put(_Pending(kind, dict(payload), actor, future))
        return future

    def set_user_config(self, config: Mapping[str, Any], timeout: float = 30.0) -> None:
        """Serve's user_config: fully validated now (ConfigError names the key, so a bad deploy
        fails loudly), applied at once when running, else when the session takes over."""
        config = dict(config)
        try:
            live = self.live.merged_with(config)
            build_strategies(self.slots, live, effective_settings(self.base_settings, live))
        except ValueError as exc:  # ConfigError and pydantic's ValidationError
            raise ConfigError(f"user_config: {exc}") from None
        self._user_config = config
        if self.state in READY_STATES:
            self.submit("user_config", config, "serve").result(timeout)

    def _apply_user_config_if_new(self, config: dict[str, Any]) -> None:
        if self._sql.get_state("user_config") == config:
            return  # the same user_config as before the restart: API changes since then stand
        self._commit_command("user_config", config, "serve")

    def _drain_commands(self) -> None:
        while True:
            try:
                pending = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                result = self._commit_command(pending.kind, pending.payload, pending.actor)
            except CommandError as exc:
                pending.future.set_exception(exc)
            except Exception as exc:
                if is_unreachable(exc):  # the loop stops trading and rebuilds from the store
                    exc_for_caller: Exception = CommandError(
                        "unavailable",
                        f"the store became unreachable while this command was being recorded "
                        f"({unreachable_reason(exc)}): it took effect only if its transaction "
                        "committed; the engine rebuilds from the store once it answers, and the "
                        "status and the audit log show what is recorded",
                    )
                else:
                    exc_for_caller = exc
                pending.future.set_exception(exc_for_caller)
                raise
            else:
                # publish first: a caller that reads the status right after its command's answer
                # must already see the command's effect (a refused command changed nothing)
                self._publish()
                pending.future.set_result(result)

    def _commit_command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        """Validate, apply and log a command in one transaction (a refused one leaves no trace)."""
        self._validate(kind, payload)
        now = pd.Timestamp.now(tz="UTC").floor("us")
        with self._sql.atomic():
            self._sql.record_command(self.steps_done, kind, payload, actor, now)
            result = self._apply(kind, payload)
            if kind in ("config", "user_config"):
                self._sql.set_state("live_config", self.live.model_dump())
            if kind == "user_config":
                self._sql.set_state("user_config", payload)
            if self.last_ts is not None:
                self._sql.write_positions(self.engine.portfolio, self.last_ts)
                self._write_algo_orders(self.last_ts)
        return result

    def _write_algo_orders(self, at: pd.Timestamp) -> None:
        """Store the parents that are working or changed status since last written (in the
        open transaction: a rolled-back one is followed by a rebuild, which resets this)."""
        changed = []
        for pid, parent in self.engine.algos.parents.items():
            status = parent.status.value
            if status != "working" and self._algo_written.get(pid) == status:
                continue
            changed.append(parent_to_dict(parent))
            self._algo_written[pid] = status
        if changed:
            self._sql.write_algo_orders(changed, at)

    def _validate(self, kind: str, payload: dict[str, Any]) -> None:
        """Everything that can refuse a command, checked before anything changes."""
        if self.last_ts is None and kind in ("order", "kill_switch", "algo_order"):
            raise CommandError("conflict", "no bar has been processed yet: there is no price")
        if kind in ("order", "algo_order"):
            symbol = payload.get("symbol")
            if symbol not in self.feed.symbols:
                raise CommandError(
                    "invalid",
                    f"symbol {symbol!r} is not traded here (symbols: {self.feed.symbols})",
                    {"field": "symbol"},
                )
            if symbol not in self.last_bars:
                raise CommandError("conflict", f"{symbol}: no bar seen yet, so no price")
            if kind == "algo_order":
                assert self.last_ts is not None
                try:
                    with_vwap_weights(payload, self.last_ts)
                    algo_request(payload)
                except AlgoFieldError as exc:
                    raise CommandError("invalid", str(exc), {"field": exc.field}) from None
                return
            qty = payload.get("qty")
            if not isinstance(qty, int | float) or not math.isfinite(qty) or qty <= 0:
                raise CommandError(
                    "invalid", f"qty: must be a number > 0, got {qty!r}", {"field": "qty"}
                )
            for flag in ("resize", "reverse"):
                if not isinstance(payload.get(flag, False), bool):
                    raise CommandError("invalid", f"{flag}: must be true or false", {"field": flag})
        elif kind == "algo_cancel":
            parent = self.engine.algos.parents.get(payload.get("parent_id", ""))
            if parent is None:
                raise CommandError("not_found", f"no algo order {payload.get('parent_id')!r}")
            if parent.status.value != "working":
                raise CommandError(
                    "conflict", f"algo order {parent.parent_id} is {parent.status.value}"
                )
        elif kind == "cancel":
            working = {o.client_order_id for o in self.engine.venue.working_orders()}
            if payload["client_order_id"] not in working:
                raise CommandError("not_found", f"no working order {payload['client_order_id']!r}")
        elif kind == "resume":
            if self.engine.risk.kill_switch.engaged and not payload.get("reset_kill_switch"):
                raise CommandError(
                    "conflict",
                    "the kill switch is engaged; resume with reset_kill_switch=true to clear it",
                )
        elif kind in ("config", "user_config"):
            try:
                live = self.live.merged_with(payload)
                settings = effective_settings(self.base_settings, live)
                build_strategies(self.slots, live, settings)
            except (ConfigError, ValueError) as exc:
                raise CommandError("invalid", str(exc)) from None

    def _apply(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Change the engine; deterministic, so the rebuild replays it to the same effect."""
        engine, ts = self.engine, self.last_ts
        if kind == VENUE_COMMAND:
            applied = engine.on_venue_events(limit=int(payload["count"]))
            return {"applied": applied}
        if kind == "pause":
            engine.risk.paused_reason = payload.get("reason") or "paused"
            self.live = self.live.merged_with({"paused": True})
        elif kind == "resume":
            engine.risk.paused_reason = None
            self.live = self.live.merged_with({"paused": False})
            if payload.get("reset_kill_switch"):
                engine.risk.kill_switch.reset()
        elif kind == "kill_switch":
            assert ts is not None
            report = engine.kill_switch(ts, payload.get("reason") or "kill switch", {})
            return {"engaged": True, **flatten_dict(report)}
        elif kind == "order":
            assert ts is not None
            symbol = payload["symbol"]
            result = engine.submit_manual_order(
                symbol,
                Side(payload["side"]),
                float(payload["qty"]),
                ts,
                self.last_bars[symbol].close,
                resize=payload.get("resize", False),
                reverse=payload.get("reverse", False),
            )
            return manual_order_dict(result)
        elif kind == "algo_order":
            assert ts is not None
            try:
                parent = engine.submit_algo_order(
                    algo_request(payload), ts, self.last_bars[payload["symbol"]]
                )
            except AlgoFieldError as exc:
                raise CommandError("invalid", str(exc), {"field": exc.field}) from None
            except PlanError as exc:  # the plan itself (lots, least tradable): names its field
                field_name = str(exc).partition(":")[0]
                raise CommandError("invalid", str(exc), {"field": field_name}) from None
            return {"algo_order": parent_dict(parent)}
        elif kind == "algo_cancel":
            assert ts is not None
            parent = engine.cancel_algo_order(payload["parent_id"], ts, "cancelled by operator")
            return {"algo_order": parent_dict(parent)}
        elif kind == "cancel":
            assert ts is not None
            return {
                "order": order_dict(
                    engine.cancel_order(payload["client_order_id"], ts, "cancelled by operator")
                )
            }
        elif kind in ("config", "user_config"):
            self.live = self.live.merged_with(payload)
            self.settings = effective_settings(self.base_settings, self.live)
            engine.update_settings(self.settings)
            assert self.shadows is not None
            self.shadows.update_settings(self.settings)
            engine.risk.paused_reason = "paused" if self.live.paused else None
            self._install_strategies()
            return {"config": self.live.model_dump()}
        return {"paused": engine.risk.paused_reason is not None}

    def _fail_pending(self) -> None:
        while True:
            try:
                pending = self._commands.get_nowait()
            except queue.Empty:
                return
            pending.future.set_exception(
                CommandError("unavailable", f"engine is {self.state}: {self.failure}")
            )

    # -- what readers see --------------------------------------------------------------------------
    def _publish(self) -> None:
        """Replace the snapshot (readers in other threads see either the old one or the new one)."""
        self._publish_trades()
        self.snapshot = self.build_snapshot()

    def _publish_trades(self) -> None:
        """The engine's own trades, as the backtest reports them (bars held included): closed
        ones are appended once, the open ones are re-marked at the last close every step."""
        engine = self.engine
        closed = engine.portfolio.closed_trades
        published = self._trades_closed
        if engine is not self._trades_engine or len(closed) < len(published):
            published, self._trades_engine = [], engine  # a rebuild made a new engine
            self._trades_summary = None
        if len(closed) > len(published) or self._trades_summary is None:
            published = published + [t.to_dict() for t in closed[len(published) :]]
            self._trades_summary = trades_summary(closed)
        self._trades_closed = published
        self._trades_open = [t.to_dict() for t in open_trades(engine)]

    def trades_page(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]:
        """One page of trades, newest first (open trades first, then closed by exit, latest
        first); for GET /api/v1/trades. From the published lists, so safe from any thread."""
        # published lists: a lost store leaves those of the last committed step
        if self.state not in READY_STATES and self.state not in ("stopped", STORE_UNAVAILABLE):
            raise CommandError(
                "unavailable",
                f"engine is {self.state}: trades come from the engine, which has not rebuilt "
                "the session yet",
            )
        rows = [*self._trades_closed, *self._trades_open]
        if symbol is not None:
            rows = [t for t in rows if t["symbol"] == symbol]
        rows.reverse()
        return {
            "trades": rows[offset : offset + limit],
            "total": len(rows),
            "limit": limit,
            "offset": offset,
        }

    def build_snapshot(self) -> dict[str, Any]:
        engine, risk = self.engine, self.engine.risk
        portfolio = engine.portfolio
        lease = self._lease
        if lease is None and self.state == "standby":
            lease = current_lease(self.store, DEFAULT_RESOURCE)
        halt = risk.halt
        pnl = self.shadows.summary() if self.shadows is not None else {}
        models = {s.name: s.status() for s in self._model_sources()}
        return {
            "state": self.state,
            "failure": self.failure,
            "feed": feed_description(self.feed),
            "holder": self.holder,
            "lease": None
            if lease is None
            else {
                "holder": lease.holder,
                "token": lease.token,
                "expires_at": lease.expires_at.isoformat(),
            },
            "step": self.steps_done,
            "last_bar_time": None if self.last_ts is None else self.last_ts.isoformat(),
            "last_step_at": None if self.last_step_at is None else self.last_step_at.isoformat(),
            "feed_exhausted": bool(self.feed.exhausted),
            "symbols": list(self.feed.symbols),
            "strategies": [
                {
                    "id": s.slot_id,
                    "name": s.name,
                    "params": {**s.params, **self.live.strategies.get(s.slot_id, {})},
                    "effective_params": self.effective_params.get(s.slot_id),
                    "pnl": pnl.get(s.slot_id),
                    "state": "standing_aside" if s.slot_id in self.aside else "active",
                    "note": self.aside.get(s.slot_id, ""),
                    **({"model": models[s.slot_id]} if s.slot_id in models else {}),
                }
                for s in self.slots
            ],
            "currency": self.currency,
            "cash": portfolio.cash,
            "equity": portfolio.equity,
            "initial_cash": portfolio.initial_cash,
            "fees_paid": portfolio.fees_paid,
            "paused": risk.paused_reason is not None,
            "halt": None if halt is None else {"rule": halt[0], "reason": halt[1]},
            "positions": positions_list(engine),
            "working_orders": [order_dict(o) for o in engine.venue.working_orders()],
            "algo_orders": algo_orders_list(engine),
            "algo_summary": algo_summary(engine),
            "trades_summary": self._trades_summary,
            "risk": risk_state(engine),
            "live_config": self.live.model_dump(),
            "recovery": self.recovery,
            "venue": self._venue_status(),
            "store": self.store_status(),
            "snapshots": {
                "every": self.snapshot_every,
                "kept": self.snapshots_kept,
                "last": self.last_snapshot or None,
            },
        }

    def _venue_status(self) -> dict[str, Any]:
        """Where orders go; for a live venue its broker's counts and the last reconciliation."""
        broker = self.broker
        if self._broker_factory is None:
            return {"kind": "paper"}
        venue = self.engine.venue
        assert isinstance(venue, LiveVenue)
        unknown = [o for o in venue.in_flight() if o.status is OrderStatus.UNKNOWN]
        return {
            "kind": "live",
            "exchange": None if broker is None else broker.exchange_id,
            "orders_in_flight": len(venue.in_flight()),
            "orders_unknown": len(unknown),
            "orders_held": len(venue.resting()),  # stops and take-profits not sent yet
            "answers_waiting": venue.waiting(),
            "broker": None if broker is None else dataclasses.asdict(broker.stats),
            "reconciliation": self.reconciliation,
        }


def _log_switch(slot: str, previous: str | None, version: str) -> None:
    if previous is not None:
        log.info("strategy %s: model version %s replaces %s from this bar", slot, version, previous)


def flatten_dict(report: FlattenReport) -> dict[str, Any]:
    """What a kill switch did, as the API answers it: the working orders it cancelled, the
    positions it flattens and the market orders placed to flatten them (they fill at the next
    bar's open)."""
    return {
        "reason": report.reason,
        "cancelled_orders": [order_dict(o) for o in report.cancelled],
        "positions_flattened": report.positions,
        "flattening_orders": [order_dict(o) for o in report.orders],
    }


def manual_order_dict(result: ManualOrderResult) -> dict[str, Any]:
    """An operator order's outcome as the API answers it: what was asked, what was placed, every
    cut made on the way (rule, from, to, why), or the rule that refused it with its numbers."""
    out: dict[str, Any] = {
        "accepted": result.accepted,
        "requested_qty": result.requested_qty,
        "qty": sum(o.qty for o in result.orders),
        "resized": bool(result.adjustments),
        "adjustments": [a.to_dict() for a in result.adjustments],
        "orders": [order_dict(o) for o in result.orders],
    }
    if not result.accepted:
        out.update(rule=result.rule, reason=result.reason, details=result.details)
    return out


def _recovery(
    stored: StoredSnapshot | None, replayed: int, started: float, fallbacks: list[dict[str, Any]]
) -> dict[str, Any]:
    """How a rebuild went, for the status: the snapshot it started from (None: a full replay),
    the steps replayed after it, how long it took and each snapshot it could not use, and why."""
    return {
        "from_snapshot_step": None if stored is None else stored.step,
        "snapshot_reason": None if stored is None else stored.reason,
        "replayed_steps": replayed,
        "seconds": round(time.perf_counter() - started, 3),
        "fallbacks": fallbacks,
    }


def _warmup(strategy: Strategy) -> int | None:
    """The strategy's warm-up in bars, or None when it cannot start (a missing model)."""
    try:
        return strategy.warmup
    except Exception:  # why is found and shown by _slot_problems, which stands the slot aside
        return None


def _aside_reason(slot: StrategySlot, settings: Settings, exc: Exception) -> str:
    """One line a user can act on: what is missing and how to get it."""
    what = str(exc) if isinstance(exc, StrategyError) else f"{type(exc).__name__}: {exc}"
    reason = f"stands aside (target 0, no orders) until it can start: {what}"
    if slot.name == "ml_signal":
        model, root = slot.params.get("model"), settings.ml.model_root
        reason += (
            f". `make run` (n1v1 paper) trains it first; by hand: `n1v1 train --name {model} "
            f"--data ... --model-root {root}` (README: The Serve application). The slot joins "
            f"within {SLOT_RETRY_S:g} s of the model appearing"
        )
    return reason


def feed_description(feed: Feed) -> dict[str, Any]:
    """What the engine trades on (a replay, its continuation, an exchange), for the status."""
    describe = getattr(feed, "describe", None)
    if callable(describe):
        return dict(describe())
    exchange = getattr(feed, "exchange_id", None)
    if exchange is not None:  # the ccxt feed: closed bars from an exchange's public market data
        label = (
            f"live {getattr(feed, 'timeframe', '')} bars of {', '.join(feed.symbols)} from "
            f"{exchange} (public market data)"
        )
        return {"kind": "ccxt", "label": label, "phase": "live"}
    return {"kind": type(feed).__name__, "label": getattr(feed, "label", ""), "phase": "live"}


ALGO_ORDERS_SHOWN = 50  # finished parents in the status (the store keeps all of them)


def algo_orders_list(engine: TradingEngine) -> list[dict[str, Any]]:
    """The working parents and the newest finished ones, newest first."""
    parents = list(engine.algos.parents.values())
    finished = [p for p in parents if p.status.value != "working"][-ALGO_ORDERS_SHOWN:]
    shown = {p.parent_id for p in finished} | {p.parent_id for p in engine.algos.working()}
    return [parent_dict(p) for p in reversed(parents) if p.parent_id in shown]


def trades_summary(closed: list[Trade]) -> dict[str, Any]:
    """The closed trades by symbol and in all: count, win rate, profit factor, expectancy (the
    backtest's formulas: metrics.trade_stats), net P&L and fees, in the account currency."""

    def summary(trades: list[Trade]) -> dict[str, Any]:
        stats = trade_stats(trades)
        return {
            "n_trades": stats["n_trades"],
            "win_rate": stats["win_rate"],
            "profit_factor": stats["profit_factor"],
            "expectancy": stats["expectancy"],
            "net_pnl": float(sum(t.pnl for t in trades)),
            "fees": float(sum(t.fees for t in trades)),
        }

    symbols = sorted({t.symbol for t in closed})
    return {
        "by_symbol": [
            {"symbol": s, **summary([t for t in closed if t.symbol == s])} for s in symbols
        ],
        "all": summary(closed),
    }


def algo_summary(engine: TradingEngine) -> dict[str, Any]:
    """Counts of the parents by status, their children sent and in flight, and the shortfall of
    the newest finished parents by algorithm (what the metrics export)."""
    parents = list(engine.algos.parents.values())
    counts = {status.value: 0 for status in ParentStatus}
    for p in parents:
        counts[p.status.value] += 1
    finished = [p for p in parents if p.status is not ParentStatus.WORKING][-ALGO_ORDERS_SHOWN:]
    shortfall: dict[str, float] = {}
    for name in sorted({p.algo for p in finished}):
        mine = [
            (p.shortfall(), p.paper_value, p.status.value, p.single_order_bps)
            for p in finished
            if p.algo == name
        ]
        total = aggregate_shortfall(mine)["total_bps"]
        if total is not None:
            shortfall[name] = total
    return {
        "parents": counts,
        "children_sent": sum(len(p.children) for p in parents),
        "children_in_flight": sum(
            sum(1 for q in p.in_flight.values() if q > 0) for p in engine.algos.working()
        ),
        "shortfall_bps": shortfall,
    }


def open_trades(engine: TradingEngine) -> list[Trade]:
    """Copies of the engine's open trades, marked at the last close, with the bars held so far
    (the count the engine will give the trade when it closes)."""
    return [
        replace(trade, bars_held=engine.state(trade.symbol).held_bars)
        for trade in engine.portfolio.open_trades()
    ]


def order_dict(order: Order) -> dict[str, Any]:
    """An order as the API shows it: the stored row, with ISO-8601 times."""
    row = order_row(order)
    row["created_at"] = order.created_at.isoformat()
    row["updated_at"] = None if order.updated_at is None else order.updated_at.isoformat()
    return row


def _dust_rules(stored: Any) -> dict[Symbol, DustRule]:
    return {Symbol(s): DustRule(float(q), float(c)) for s, (q, c) in (stored or {}).items()}


def positions_list(engine: TradingEngine) -> list[dict[str, Any]]:
    out = []
    for symbol, pos in sorted(engine.portfolio.positions.items()):
        if not pos.is_open:
            continue
        marked = math.isfinite(pos.last_price)
        out.append(
            {
                "symbol": symbol,
                "qty": pos.qty,
                "avg_entry": pos.avg_entry,
                "last_price": pos.last_price if marked else None,
                "market_value": pos.market_value if marked else None,
                "unrealized_pnl": pos.unrealized_pnl if marked else None,
                "realized_pnl": pos.realized_pnl,
                # too small for the exchange to trade: held, not traded (docs/live.md, "Dust")
                "dust": engine.portfolio.is_dust(pos),
            }
        )
    return out


def risk_state(engine: TradingEngine) -> dict[str, Any]:
    """Limits, how much of each is used, and the breaker: what GET /api/v1/risk shows."""
    risk, portfolio = engine.risk, engine.portfolio
    equity = portfolio.equity
    open_positions = sum(1 for s in portfolio.positions if portfolio.holds(s))  # dust: not one
    gross = sum(
        abs(p.market_value)
        for p in portfolio.positions.values()
        if p.is_open and math.isfinite(p.last_price)
    )
    peak = risk.breaker.peak
    day_start = risk.daily.day_start_equity
    return {
        "limits": risk.settings.model_dump(),
        "usage": {
            "open_positions": open_positions,
            "total_exposure": gross / equity if equity > 0 else None,
            "drawdown": 1.0 - equity / peak if peak > 0 else 0.0,
            "daily_loss": 1.0 - equity / day_start if day_start > 0 else 0.0,
            "consecutive_losses": risk.breaker.consecutive_losses,
        },
        "breaker": {
            "tripped": risk.breaker.tripped,
            "reason": risk.breaker.reason,
            "peak_equity": peak,
        },
        "daily_loss_halted": risk.daily.halted,
        "kill_switch": {"engaged": risk.kill_switch.engaged, "reason": risk.kill_switch.reason},
        "paused": risk.paused_reason is not None,
    }
