"""Every application metric N1V1 exports: name, type, tags, meaning and where it is emitted.

The one list: `n1v1/serve/metrics.py` and `n1v1/ml/train_metrics.py` create their
`ray.util.metrics` objects from it, docs/monitoring.md's metric table is checked against it, and
tests/test_monitoring_static.py checks that every `ray_n1v1_*` name a dashboard panel or an alert
uses is one of these with the suffix its type gets in Prometheus. Tags stay low-cardinality: a
symbol, side, strategy, rule, route template, method, status code, model name or state, never an
id or a caller-chosen string.

Ray exports each metric with the `ray_` prefix, counters with `_total`, histograms as `_bucket`,
`_sum` and `_count` series, and adds its own labels (SessionName, WorkerId, NodeAddress,
Component, Version); a scrape adds `instance`, `job` and, through the PodMonitors, `namespace`,
`pod`, `container` and `ray_io_cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["counter", "gauge", "histogram"]

LATENCY_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS_S += (2.5,)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
PROMETHEUS_PREFIX = "ray_"  # Ray's namespace for every metric it exports


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    kind: Kind
    help: str
    tags: tuple[str, ...] = ()
    source: str = "engine"  # engine | api | model | training: the process that emits it
    boundaries: tuple[float, ...] = ()  # histograms only

    @property
    def series(self) -> tuple[str, ...]:
        """The names Prometheus stores for this metric."""
        base = PROMETHEUS_PREFIX + self.name
        if self.kind == "counter":
            return (base + "_total",)
        if self.kind == "histogram":
            return (base + "_bucket", base + "_sum", base + "_count")
        return (base,)


def _c(name: str, help: str, tags: tuple[str, ...] = (), source: str = "engine") -> MetricSpec:
    return MetricSpec(name, "counter", help, tags, source)


def _g(name: str, help: str, tags: tuple[str, ...] = (), source: str = "engine") -> MetricSpec:
    return MetricSpec(name, "gauge", help, tags, source)


def _h(
    name: str, help: str, buckets: tuple[float, ...], tags: tuple[str, ...] = (), source: str = ""
) -> MetricSpec:
    return MetricSpec(name, "histogram", help, tags, source or "engine", buckets)


METRICS: tuple[MetricSpec, ...] = (
    # -- the engine (n1v1/serve/engine.py, counted by the journal wrapper and the step hook) ----
    _c("n1v1_orders_submitted", "orders accepted by the venue", ("symbol", "side")),
    _c("n1v1_orders_filled", "orders completely filled", ("symbol", "side")),
    _c("n1v1_orders_rejected", "orders rejected by the venue", ("symbol", "side")),
    _c("n1v1_fees_paid", "fees paid, account currency", ("symbol",)),
    _c("n1v1_signals", "strategy target changes", ("strategy", "symbol")),
    _c("n1v1_risk_rejections", "entries refused by a risk rule", ("rule",)),
    _c("n1v1_bars_processed", "feed steps the engine processed"),
    _g("n1v1_equity", "account equity, account currency"),
    _g("n1v1_drawdown", "fraction of equity below its peak since this engine replica started"),
    _g(
        "n1v1_pnl",
        "account P&L since the session began: realized (closed, net of every fee) and "
        "unrealized (open positions at the last close); their sum is equity - initial cash",
        ("kind",),
    ),
    _g("n1v1_strategy_pnl", "each strategy's own net P&L (its shadow account)", ("strategy",)),
    _g("n1v1_open_positions", "symbols with an open position"),
    _g("n1v1_last_step_timestamp_seconds", "Unix time at which the engine finished its last step"),
    _g(
        "n1v1_feed_interval_seconds",
        "expected seconds between two feed steps (the live timeframe, or 1 / bars_per_second "
        "of a replay; 0 for a replay without pacing)",
    ),
    _g("n1v1_engine_state", "1 for the engine's current state, 0 for the others", ("state",)),
    _g("n1v1_engine_lease_held", "1 while this engine holds the lease and trades, else 0"),
    _g(
        "n1v1_store_available",
        "1 while the engine reaches its store, 0 during an outage (it does not trade then)",
    ),
    _g(
        "n1v1_venue_orders_in_flight",
        "live venue: orders sent to the exchange whose outcome is not final yet",
    ),
    _g(
        "n1v1_venue_orders_unknown",
        "live venue: orders whose create call failed ambiguously, being found by client id",
    ),
    _g(
        "n1v1_venue_reconciled",
        "live venue: 1 while the books agree with the exchange's balances at the last check, "
        "0 after a disagreement (trading is paused)",
    ),
    _g(
        "n1v1_trading_halted",
        "1 while this rule refuses new entries (kill_switch, circuit_breaker, max_daily_loss, "
        "paused), else 0",
        ("rule",),
    ),
    _c(
        "n1v1_model_predictions",
        "an ml_signal slot's model inputs per bar and symbol, by outcome: ok, not_ready "
        "(features warming up: no call), timeout, error, mismatch (the replica's version reads "
        "other features)",
        ("strategy", "outcome"),
    ),
    _g(
        "n1v1_strategy_model_version",
        "the model version an ml_signal slot trades now (2 for v0002)",
        ("strategy", "model"),
    ),
    _g(
        "n1v1_model_shadow_agreement",
        "share of bars on which an ml_signal slot's shadow version wanted the traded target",
        ("strategy",),
    ),
    _g(
        "n1v1_algo_parents",
        "the engine's parent orders (TWAP, VWAP) by status: working, done, ended, cancelled",
        ("status",),
    ),
    _g(
        "n1v1_algo_children_in_flight",
        "child orders of working parents whose outcome is not final yet",
    ),
    _g(
        "n1v1_algo_children_sent",
        "child orders the engine's parents have sent since the session began (a count rebuilt "
        "with the engine: use delta(), not rate())",
    ),
    _g(
        "n1v1_algo_shortfall_bps",
        "implementation shortfall of the newest finished parents (up to 50), weighted by "
        "paper value, in basis points; positive is a cost",
        ("algo",),
    ),
    _h(
        "n1v1_decision_latency_seconds",
        "from a bar's arrival to the engine's decisions on it",
        LATENCY_BUCKETS_S,
    ),
    # -- the gateway (n1v1/serve/api.py middleware) -------------------------------------------
    _c("n1v1_api_requests", "HTTP requests", ("route", "method", "status"), "api"),
    _h(
        "n1v1_api_latency_seconds",
        "HTTP request handling time in the gateway",
        LATENCY_BUCKETS_S,
        ("route",),
        "api",
    ),
    # -- the model server (n1v1/serve/model.py) ------------------------------------------------
    _h(
        "n1v1_inference_latency_seconds",
        "one batched model forward pass",
        LATENCY_BUCKETS_S,
        ("model",),
        "model",
    ),
    _h(
        "n1v1_inference_batch_size",
        "requests per batched forward pass",
        BATCH_BUCKETS,
        ("model",),
        "model",
    ),
    _c(
        "n1v1_inference_errors",
        "prediction requests a loaded model could not answer: invalid (rows of the wrong width "
        "for this version) or failed (the forward pass raised)",
        ("model", "reason"),
        "model",
    ),
    _g("n1v1_model_versions", "complete versions in the registry", ("model",), "model"),
    _g(
        "n1v1_model_promoted_version",
        "the promoted version's number (2 for v0002); absent while none is promoted",
        ("model",),
        "model",
    ),
    _g("n1v1_model_promotions", "promotions in the registry's history", ("model",), "model"),
    _g(
        "n1v1_model_promoted_trained_timestamp_seconds",
        "Unix time at which the promoted version was trained (its card's created_at)",
        ("model",),
        "model",
    ),
    # -- training (n1v1/ml/train_metrics.py, from the driver of a training run) ---------------
    _c(
        "n1v1_training_runs",
        "training runs by outcome: succeeded (trained, and registered unless asked not to) "
        "or failed (raised)",
        ("model", "outcome"),
        "training",
    ),
    _c("n1v1_training_epochs", "epochs trained", ("model",), "training"),
    _g(
        "n1v1_training_loss",
        "the last epoch's mean loss, per split (train, validation)",
        ("model", "split"),
        "training",
    ),
    _g("n1v1_training_val_auc", "the last epoch's validation AUC", ("model",), "training"),
)

BY_NAME: dict[str, MetricSpec] = {m.name: m for m in METRICS}
SERIES: dict[str, MetricSpec] = {s: m for m in METRICS for s in m.series}

# Labels Ray and a Prometheus scrape add to every application series (module docstring).
RAY_LABELS = frozenset({"SessionName", "WorkerId", "NodeAddress", "Component", "Version"})
SCRAPE_LABELS = frozenset({"instance", "job", "namespace", "pod", "container", "ray_io_cluster"})
