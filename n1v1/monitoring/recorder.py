"""What N1V1 measures while it trades and serves, whichever process exports it.

Each metric is created once per process from its entry in the catalogue,
`n1v1/monitoring/catalog.py`, which holds every name, type and tag key; `set_backend` says how
(Ray's `ray.util.metrics` in the Serve app, prometheus-client in `n1v1 live`). Engine metrics come
from the journal, which already sees every order, fill, signal and risk decision as it happens
(`MetricsJournal`), so nothing is counted twice or missed on a code path that forgot to count; the
engine's state, lease and halts are read from the session's published snapshot at every health
check (`observe_engine`), so they stay current while no bar arrives.

Ray 2.60 drops a gauge that its process has not set for two export intervals (20 s by default):
a gauge set only when something happens (a bar of a 1-minute feed, a promotion) would blink in
and out of Prometheus. Every gauge is therefore set through `_set`, which remembers its last value,
and the replicas' health checks call `refresh_gauges` to set them all again (the Engine every 2 s,
the Model every 10 s).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from n1v1.domain import EquityPoint, Fill, Order, OrderStatus, RiskDecision, Signal
from n1v1.engine.journal import Journal
from n1v1.engine.shadows import shadow_pnl
from n1v1.live.session import READY_STATES
from n1v1.monitoring.catalog import METRICS, MetricSpec

ENGINE_STATES = (
    "starting",
    "standby",
    "running",
    "replay_finished",
    "store_unavailable",
    "failed",
    "stopped",
)
HALT_RULES = ("kill_switch", "circuit_breaker", "max_daily_loss", "paused")


MetricFactory = Callable[[MetricSpec], Any]
_backend: list[MetricFactory] = []


def set_backend(factory: MetricFactory) -> None:
    """Choose how metrics are made, once per process before the first is used: Ray's
    (n1v1/serve/metrics.py, exported by Ray's Prometheus endpoint) or prometheus-client's
    (n1v1/live/metrics_endpoint.py, for `n1v1 live` without Ray). Both take the catalogue's
    names, kinds, tags and buckets, so dashboards and alerts read either."""
    if _backend and _backend[0] is not factory:
        if metrics.cache_info().currsize:
            raise RuntimeError("metrics are already in use with another backend")
        _backend.clear()
    if not _backend:
        _backend.append(factory)


@functools.cache
def metrics() -> dict[str, Any]:
    """The serving metrics of the catalogue (not the training ones), keyed by name."""
    if not _backend:
        raise RuntimeError("no metrics backend: call set_backend first (module docstring)")
    create = _backend[0]
    return {m.name: create(m) for m in METRICS if m.source != "training"}


_gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
_gauges_lock = threading.Lock()  # the engine loop and the health check both set gauges


def _set(name: str, value: float, tags: Mapping[str, str] | None = None) -> None:
    """Set a gauge and remember the value for `refresh_gauges`."""
    metrics()[name].set(value, tags=dict(tags) if tags else None)
    with _gauges_lock:
        _gauges[(name, tuple(sorted((tags or {}).items())))] = value


def refresh_gauges() -> None:
    """Set every gauge this process has set again, with its last value (module docstring)."""
    with _gauges_lock:
        last = list(_gauges.items())
    m = metrics()
    for (name, tags), value in last:
        m[name].set(value, tags=dict(tags) if tags else None)


class MetricsJournal:
    """A Journal that counts what passes through it, then hands it to the real journal."""

    def __init__(self, inner: Journal) -> None:
        self.inner = inner
        self._m = metrics()
        self._peak = 0.0

    def record_order(self, order: Order) -> None:
        self.inner.record_order(order)
        tags = {"symbol": order.symbol, "side": order.side.value}
        if order.status is OrderStatus.SUBMITTED:
            self._m["n1v1_orders_submitted"].inc(1, tags=tags)
        elif order.status is OrderStatus.FILLED:
            self._m["n1v1_orders_filled"].inc(1, tags=tags)
        elif order.status is OrderStatus.REJECTED:
            self._m["n1v1_orders_rejected"].inc(1, tags=tags)

    def record_fill(self, fill: Fill) -> None:
        self.inner.record_fill(fill)
        if fill.fee > 0:
            self._m["n1v1_fees_paid"].inc(fill.fee, tags={"symbol": fill.symbol})

    def record_signal(self, signal: Signal) -> None:
        self.inner.record_signal(signal)
        tags = {"strategy": signal.strategy, "symbol": signal.symbol}
        self._m["n1v1_signals"].inc(1, tags=tags)

    def record_risk_decision(self, decision: RiskDecision) -> None:
        self.inner.record_risk_decision(decision)
        if decision.action == "reject":
            self._m["n1v1_risk_rejections"].inc(1, tags={"rule": decision.rule})

    def record_equity(self, point: EquityPoint) -> None:
        self.inner.record_equity(point)
        self._peak = max(self._peak, point.equity)
        _set("n1v1_equity", point.equity)
        _set("n1v1_drawdown", 1.0 - point.equity / self._peak if self._peak > 0 else 0.0)


def observe_step(latency_s: float, engine: Any) -> None:
    """After each step: its decision latency, the open positions, the account's P&L split (by
    `shadow_pnl`, the one formula for it) and the wall-clock time the step finished."""
    m = metrics()
    m["n1v1_decision_latency_seconds"].observe(latency_s)
    m["n1v1_bars_processed"].inc(1)
    _set("n1v1_last_step_timestamp_seconds", time.time())
    pnl = shadow_pnl(engine)
    _set("n1v1_open_positions", len(pnl["positions"]))
    _set("n1v1_pnl", pnl["realized_pnl"], {"kind": "realized"})
    _set("n1v1_pnl", pnl["unrealized_pnl"], {"kind": "unrealized"})


def observe_feed_interval(seconds: float) -> None:
    _set("n1v1_feed_interval_seconds", seconds)


def observe_engine(snapshot: Mapping[str, Any]) -> None:
    """From the session's published snapshot (every health check): `n1v1_engine_state{state}`
    (1 for the current state, 0 for every other), `n1v1_engine_lease_held` (1 in a state that holds
    the lease: running or replay_finished; the sum over replicas is the number of engines acting),
    `n1v1_trading_halted{rule}`, `n1v1_store_available` (0 while the engine cannot reach its
    store), a live venue's orders in flight, unknown orders and last reconciliation, the parent
    orders' counts and shortfall, and each strategy's net P&L."""
    state = str(snapshot.get("state", "starting"))
    for name in ENGINE_STATES:
        _set("n1v1_engine_state", 1.0 if name == state else 0.0, {"state": name})
    _set("n1v1_engine_lease_held", 1.0 if state in READY_STATES else 0.0)
    store = snapshot.get("store")
    if isinstance(store, Mapping):
        _set("n1v1_store_available", 1.0 if store.get("available") else 0.0)
    venue = snapshot.get("venue")
    if isinstance(venue, Mapping) and venue.get("kind") == "live":
        _set("n1v1_venue_orders_in_flight", float(venue.get("orders_in_flight") or 0))
        _set("n1v1_venue_orders_unknown", float(venue.get("orders_unknown") or 0))
        check = venue.get("reconciliation")
        if isinstance(check, Mapping):
            _set("n1v1_venue_reconciled", 1.0 if check.get("ok") else 0.0)
    risk = snapshot.get("risk")
    if isinstance(risk, Mapping):
        halted = {
            "kill_switch": risk["kill_switch"]["engaged"],
            "circuit_breaker": risk["breaker"]["tripped"],
            "max_daily_loss": risk["daily_loss_halted"],
            "paused": risk["paused"],
        }
        for rule in HALT_RULES:
            _set("n1v1_trading_halted", 1.0 if halted[rule] else 0.0, {"rule": rule})
    algo = snapshot.get("algo_summary")
    if isinstance(algo, Mapping):
        for status, n in algo["parents"].items():
            _set("n1v1_algo_parents", float(n), {"status": status})
        _set("n1v1_algo_children_in_flight", float(algo["children_in_flight"]))
        _set("n1v1_algo_children_sent", float(algo["children_sent"]))
        for name, bps in algo["shortfall_bps"].items():
            _set("n1v1_algo_shortfall_bps", float(bps), {"algo": name})
    for strategy in snapshot.get("strategies") or []:
        pnl = strategy.get("pnl")
        if isinstance(pnl, Mapping):
            _set("n1v1_strategy_pnl", pnl["net_pnl"], {"strategy": strategy["id"]})
        model = strategy.get("model")
        if isinstance(model, Mapping) and model.get("version"):
            tags = {"strategy": strategy["id"], "model": model["model"]}
            _set("n1v1_strategy_model_version", float(model["version"].lstrip("v")), tags)
            shadow = model.get("shadow")
            if isinstance(shadow, Mapping) and shadow.get("agreement") is not None:
                tags = {"strategy": strategy["id"]}
                _set("n1v1_model_shadow_agreement", float(shadow["agreement"]), tags)


def observe_predictions(records: Sequence[Any]) -> None:
    """After each step, the ml_signal slots' model inputs by outcome (PredictionRecord)."""
    counts = Tally((r.slot, r.status) for r in records if r.role == "trade")
    counter = metrics()["n1v1_model_predictions"]
    for (slot, status), n in counts.items():  # one call per slot and outcome, not per symbol
        counter.inc(n, tags={"strategy": slot, "outcome": status})


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    m = metrics()
    tags = {"route": route, "method": method, "status": str(status)}
    m["n1v1_api_requests"].inc(1, tags=tags)
    m["n1v1_api_latency_seconds"].observe(seconds, tags={"route": route})


def observe_inference(model: str, seconds: float, requests: int) -> None:
    m = metrics()
    m["n1v1_inference_latency_seconds"].observe(seconds, tags={"model": model})
    m["n1v1_inference_batch_size"].observe(requests, tags={"model": model})


def observe_inference_error(model: str, reason: str) -> None:
    """`reason`: invalid (rows of the wrong width) or failed (the forward pass raised). Only for
    a model the registry resolved, so the tag never holds a caller-chosen name."""
    metrics()["n1v1_inference_errors"].inc(1, tags={"model": model, "reason": reason})


def observe_registry(models: Mapping[str, Mapping[str, float | None]]) -> None:
    """The registry's state per model (`n1v1.ml.registry_stats`): versions, promotions, the
    promoted version's number and training time (absent while none is promoted)."""
    for model, stats in models.items():
        tags = {"model": model}
        for key, name in (
            ("versions", "n1v1_model_versions"),
            ("promotions", "n1v1_model_promotions"),
            ("promoted_version", "n1v1_model_promoted_version"),
            ("promoted_trained_at", "n1v1_model_promoted_trained_timestamp_seconds"),
        ):
            value = stats.get(key)
            if value is not None:
                _set(name, float(value), tags)
