"""Application metrics through `ray.util.metrics`, exported by Ray's Prometheus endpoint.

Created once per process (Ray registers each name once), tagged with low-cardinality keys only:
symbol, side, strategy, rule, route, method, status, model, state. Engine metrics come from the
journal, which already sees every order, fill, signal and risk decision as it happens
(`MetricsJournal`), so nothing is counted twice or missed on a code path that forgot to count.
"""

from __future__ import annotations

import functools
from typing import Any

from ray.util.metrics import Counter, Gauge, Histogram

from n1v1.domain import EquityPoint, Fill, Order, OrderStatus, RiskDecision, Signal
from n1v1.engine.journal import Journal

_LATENCY_S = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]


@functools.cache
def metrics() -> dict[str, Any]:
    return {
        "orders_submitted": Counter(
            "n1v1_orders_submitted", "orders accepted by the venue", tag_keys=("symbol", "side")
        ),
        "orders_filled": Counter(
            "n1v1_orders_filled", "orders completely filled", tag_keys=("symbol", "side")
        ),
        "orders_rejected": Counter(
            "n1v1_orders_rejected", "orders rejected by the venue", tag_keys=("symbol", "side")
        ),
        "fees": Counter("n1v1_fees_paid", "fees paid, quote currency", tag_keys=("symbol",)),
        "signals": Counter(
            "n1v1_signals", "strategy target changes", tag_keys=("strategy", "symbol")
        ),
        "risk_rejections": Counter(
            "n1v1_risk_rejections", "entries refused by a risk rule", tag_keys=("rule",)
        ),
        "equity": Gauge("n1v1_equity", "account equity, quote currency"),
        "drawdown": Gauge("n1v1_drawdown", "fraction below the equity peak"),
        "open_positions": Gauge("n1v1_open_positions", "symbols with an open position"),
        "bars": Counter("n1v1_bars_processed", "feed steps the engine processed"),
        "engine_state": Gauge(
            "n1v1_engine_state",
            "1 for the engine's current state, 0 for the others",
            tag_keys=("state",),
        ),
        "decision_latency": Histogram(
            "n1v1_decision_latency_seconds",
            "from a bar's arrival to the engine's decisions on it",
            boundaries=_LATENCY_S,
        ),
        "inference_latency": Histogram(
            "n1v1_inference_latency_seconds",
            "one batched model forward pass",
            boundaries=_LATENCY_S,
            tag_keys=("model",),
        ),
        "batch_size": Histogram(
            "n1v1_inference_batch_size",
            "requests per batched forward pass",
            boundaries=[1, 2, 4, 8, 16, 32, 64, 128, 256],
            tag_keys=("model",),
        ),
        "api_requests": Counter(
            "n1v1_api_requests", "HTTP requests", tag_keys=("route", "method", "status")
        ),
        "api_latency": Histogram(
            "n1v1_api_latency_seconds",
            "HTTP request handling time in the gateway",
            boundaries=_LATENCY_S,
            tag_keys=("route",),
        ),
    }


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
            self._m["orders_submitted"].inc(1, tags=tags)
        elif order.status is OrderStatus.FILLED:
            self._m["orders_filled"].inc(1, tags=tags)
        elif order.status is OrderStatus.REJECTED:
            self._m["orders_rejected"].inc(1, tags=tags)

    def record_fill(self, fill: Fill) -> None:
        self.inner.record_fill(fill)
        if fill.fee > 0:
            self._m["fees"].inc(fill.fee, tags={"symbol": fill.symbol})

    def record_signal(self, signal: Signal) -> None:
        self.inner.record_signal(signal)
        self._m["signals"].inc(1, tags={"strategy": signal.strategy, "symbol": signal.symbol})

    def record_risk_decision(self, decision: RiskDecision) -> None:
        self.inner.record_risk_decision(decision)
        if decision.action == "reject":
            self._m["risk_rejections"].inc(1, tags={"rule": decision.rule})

    def record_equity(self, point: EquityPoint) -> None:
        self.inner.record_equity(point)
        self._peak = max(self._peak, point.equity)
        self._m["equity"].set(point.equity)
        self._m["drawdown"].set(1.0 - point.equity / self._peak if self._peak > 0 else 0.0)


def observe_step(latency_s: float, open_positions: int) -> None:
    m = metrics()
    m["decision_latency"].observe(latency_s)
    m["open_positions"].set(open_positions)
    m["bars"].inc(1)


ENGINE_STATES = ("starting", "standby", "running", "replay_finished", "failed", "stopped")


def observe_state(state: str) -> None:
    """`n1v1_engine_state{state=...}`: 1 for the current state, 0 for every other one."""
    gauge = metrics()["engine_state"]
    for name in ENGINE_STATES:
        gauge.set(1.0 if name == state else 0.0, tags={"state": name})


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    m = metrics()
    m["api_requests"].inc(1, tags={"route": route, "method": method, "status": str(status)})
    m["api_latency"].observe(seconds, tags={"route": route})


def observe_inference(model: str, seconds: float, requests: int) -> None:
    m = metrics()
    m["inference_latency"].observe(seconds, tags={"model": model})
    m["batch_size"].observe(requests, tags={"model": model})
