"""The N1V1 Grafana dashboards: Trading, Serving and Training, described panel by panel.

Rendered into kuberay/monitoring/dashboards/*.json by `python -m n1v1.monitoring.generate`. Every
selector carries the `$Cluster` filter. Counters are shown as what they added over a fixed window
(`increase`, or `recent` where a series may be born inside the window); error panels fall back to
0 for series that had traffic but no error, so a healthy system shows 0, not "No data".
"""

from __future__ import annotations

from n1v1.monitoring.alerts import (
    API_5XX_RATIO,
    MODEL_MAX_AGE_DAYS,
    NOT_LATENCY,
    SHORTFALL_ALERT_BPS,
    STALL_FLOOR_S,
    STALL_INTERVALS,
)
from n1v1.monitoring.grafana import Dashboard, Panel, Row, Target
from n1v1.monitoring.promql import CLUSTER, recent, sel

WORKING = 'status="working"'
LATENCY = ("ray_n1v1_api_latency_seconds_bucket", "route, le", NOT_LATENCY)


def c(series: str, *matchers: str) -> str:
    """A selector with the dashboards' cluster filter."""
    return sel(series, CLUSTER, *matchers)


def _quantile(q: float, bucket: str, by: str, *matchers: str, window: str = "5m") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({c(bucket, *matchers)}[{window}])))"


def _trading() -> Dashboard:
    pnl = c("ray_n1v1_pnl")
    rejected, submitted = c("ray_n1v1_orders_rejected_total"), c("ray_n1v1_orders_submitted_total")
    return Dashboard(
        uid="n1v1-trading",
        title="N1V1 Trading",
        description="The paper/live engine: account, orders, signals, risk and the engine loop.",
        cluster_metric="ray_n1v1_engine_state",
        rows=(
            Row(
                "Account",
                (
                    Panel(
                        "Equity",
                        "Account equity in the account currency, after every bar.",
                        (Target(f"max by (ray_io_cluster) ({c('ray_n1v1_equity')})", "equity"),),
                        unit="currencyUSD",
                        width=8,
                    ),
                    Panel(
                        "Drawdown",
                        "Fraction of equity below its peak since the engine started.",
                        (
                            Target(
                                f"max by (ray_io_cluster) ({c('ray_n1v1_drawdown')})", "drawdown"
                            ),
                        ),
                        unit="percentunit",
                        width=8,
                    ),
                    Panel(
                        "Open positions",
                        "Symbols with an open position.",
                        (Target(f"max by (ray_io_cluster) ({c('ray_n1v1_open_positions')})"),),
                        type="stat",
                        width=8,
                    ),
                    Panel(
                        "P&L",
                        "Realized (closed trades, net of every fee) and unrealized (open "
                        "positions at the last close) P&L; net is their sum, equity - initial "
                        "cash.",
                        (
                            Target(f"sum by (kind) ({pnl})", "{{kind}}"),
                            Target(f"sum({pnl})", "net"),
                        ),
                        unit="currencyUSD",
                    ),
                    Panel(
                        "P&L by strategy",
                        "Each strategy's own net P&L, from its shadow account (docs/serve.md).",
                        (
                            Target(
                                f"sum by (strategy) ({c('ray_n1v1_strategy_pnl')})", "{{strategy}}"
                            ),
                        ),
                        unit="currencyUSD",
                    ),
                ),
            ),
            Row(
                "Orders and signals",
                (
                    Panel(
                        "Orders submitted (5 min)",
                        "Orders the venue accepted, by symbol and side.",
                        (
                            Target(
                                f"sum by (symbol, side) (increase({submitted}[5m]))",
                                "{{symbol}} {{side}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Fills (5 min)",
                        "Orders completely filled, by symbol and side.",
                        (
                            Target(
                                "sum by (symbol, side) "
                                f"(increase({c('ray_n1v1_orders_filled_total')}[5m]))",
                                "{{symbol}} {{side}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Orders rejected by the venue (10 min)",
                        "By symbol; 0 for a symbol with orders but no rejection.",
                        (
                            Target(
                                f"sum by (symbol) ({recent(rejected, '10m')}) "
                                f"or sum by (symbol) (increase({submitted}[10m])) * 0",
                                "{{symbol}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Fees (1 h)",
                        "Fees paid in the account currency, by symbol.",
                        (
                            Target(
                                f"sum by (symbol) (increase({c('ray_n1v1_fees_paid_total')}[1h]))",
                                "{{symbol}}",
                            ),
                        ),
                        unit="currencyUSD",
                        width=8,
                    ),
                    Panel(
                        "Signals (5 min)",
                        "Strategy target changes, by strategy and symbol.",
                        (
                            Target(
                                "sum by (strategy, symbol) "
                                f"(increase({c('ray_n1v1_signals_total')}[5m]))",
                                "{{strategy}} {{symbol}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Risk rejections by rule (10 min)",
                        "Entries a risk rule refused.",
                        (
                            Target(
                                "sum by (rule) "
                                f"({recent(c('ray_n1v1_risk_rejections_total'), '10m')})",
                                "{{rule}}",
                            ),
                        ),
                        width=8,
                    ),
                ),
            ),
            Row(
                "Engine",
                (
                    Panel(
                        "Engine state",
                        "1 for each replica's current state.",
                        (
                            Target(
                                f"max by (state) ({c('ray_n1v1_engine_state')}) == 1", "{{state}}"
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Lease holders",
                        "Engines holding the store's lease; exactly 1 trades.",
                        (Target(f"sum({c('ray_n1v1_engine_lease_held')})"),),
                        type="stat",
                        width=8,
                    ),
                    Panel(
                        "Store reachable",
                        "1 while the engine reaches its database; 0 during an outage, when it "
                        "does not trade and resumes by itself once the store answers.",
                        (Target(f"min({c('ray_n1v1_store_available')})"),),
                        type="stat",
                        width=8,
                    ),
                    Panel(
                        "Live venue: books vs exchange",
                        "1 while the last reconciliation found the books equal to the "
                        "exchange's balances; 0 after a difference (trading paused). No data "
                        "on the paper venue.",
                        (Target(f"min({c('ray_n1v1_venue_reconciled')})"),),
                        type="stat",
                        width=8,
                    ),
                    Panel(
                        "Live venue: orders in flight and unknown",
                        "Orders sent whose outcome is not final, and those whose create call "
                        "failed ambiguously (being found by client id).",
                        (
                            Target(f"sum({c('ray_n1v1_venue_orders_in_flight')})", "in flight"),
                            Target(f"sum({c('ray_n1v1_venue_orders_unknown')})", "unknown"),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Trading halts",
                        "1 while the rule refuses new entries.",
                        (Target(f"max by (rule) ({c('ray_n1v1_trading_halted')})", "{{rule}}"),),
                        width=8,
                    ),
                    Panel(
                        "Decision latency",
                        "From a bar's arrival to the engine's decisions on it.",
                        (
                            Target(
                                _quantile(0.5, "ray_n1v1_decision_latency_seconds_bucket", "le"),
                                "p50",
                            ),
                            Target(
                                _quantile(0.99, "ray_n1v1_decision_latency_seconds_bucket", "le"),
                                "p99",
                            ),
                        ),
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Bars per second",
                        "Feed steps the engine processed.",
                        (Target(f"sum(rate({c('ray_n1v1_bars_processed_total')}[1m]))", "bars/s"),),
                        width=8,
                    ),
                    Panel(
                        "Model version in use",
                        "The version each ml_signal slot trades (it follows a promotion at the "
                        "next bar after the Model replicas swap).",
                        (
                            Target(
                                f"max by (strategy, model) "
                                f"({c('ray_n1v1_strategy_model_version')})",
                                "{{strategy}}: {{model}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Model inputs by outcome",
                        "An ml_signal slot's model answers per bar and symbol over 5 minutes: "
                        "ok, not_ready (warming up), timeout, error, mismatch.",
                        (
                            Target(
                                f"sum by (strategy, outcome) "
                                f"(increase({c('ray_n1v1_model_predictions_total')}[5m]))",
                                "{{strategy}} {{outcome}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Shadow agreement",
                        "Share of bars on which a slot's shadow version wanted the traded target.",
                        (
                            Target(
                                f"max by (strategy) ({c('ray_n1v1_model_shadow_agreement')})",
                                "{{strategy}}",
                            ),
                        ),
                        unit="percentunit",
                        width=8,
                    ),
                    Panel(
                        "Parent orders (TWAP, VWAP)",
                        "Working parents, and the child orders of working parents whose outcome "
                        "is not final yet.",
                        (
                            Target(f"sum({c('ray_n1v1_algo_parents', WORKING)})", "working"),
                            Target(
                                f"sum({c('ray_n1v1_algo_children_in_flight')})",
                                "children in flight",
                            ),
                            Target(
                                f"sum(delta({c('ray_n1v1_algo_children_sent')}[5m]))",
                                "children sent (5 min)",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Implementation shortfall",
                        "Of the newest finished parents, weighted by paper value (positive is a "
                        f"cost); the alert fires above {SHORTFALL_ALERT_BPS:g} bps.",
                        (
                            Target(
                                f"max by (algo) ({c('ray_n1v1_algo_shortfall_bps')})",
                                "{{algo}}",
                            ),
                        ),
                        unit="none",
                        width=8,
                    ),
                    Panel(
                        "Time since the last step",
                        "Against the feed's interval; the stalled-feed alert fires at "
                        f"{STALL_INTERVALS} intervals (at least {STALL_FLOOR_S} s).",
                        (
                            Target(
                                f"time() - max({c('ray_n1v1_last_step_timestamp_seconds')})",
                                "since last step",
                            ),
                            Target(f"max({c('ray_n1v1_feed_interval_seconds')})", "feed interval"),
                        ),
                        unit="s",
                        width=8,
                    ),
                ),
            ),
        ),
    )


def _serving() -> Dashboard:
    requests = c("ray_n1v1_api_requests_total")
    errors = c("ray_n1v1_api_requests_total", 'status=~"[45].."')
    server_errors = c("ray_n1v1_api_requests_total", 'status=~"5.."')
    inference_errors = c("ray_n1v1_inference_errors_total")
    batches = c("ray_n1v1_inference_batch_size_count")
    return Dashboard(
        uid="n1v1-serving",
        title="N1V1 Serving",
        description="The gateway's HTTP API, the model server and the Serve replicas.",
        cluster_metric="ray_serve_deployment_replica_healthy",
        rows=(
            Row(
                "HTTP API",
                (
                    Panel(
                        "Requests by route",
                        "Requests per second by route template and method.",
                        (
                            Target(
                                f"sum by (route, method) (rate({requests}[5m]))",
                                "{{method}} {{route}}",
                            ),
                        ),
                        unit="reqps",
                    ),
                    Panel(
                        "Errors by route and status",
                        "4xx and 5xx answers per second; 0 for a route without errors.",
                        (
                            Target(
                                f"sum by (route, status) (rate({errors}[5m])) "
                                f"or sum by (route) (rate({requests}[5m])) * 0",
                                "{{route}} {{status}}",
                            ),
                        ),
                        unit="reqps",
                    ),
                    Panel(
                        "5xx ratio",
                        f"Share of requests answered 5xx (alert at {API_5XX_RATIO:.0%}).",
                        (
                            Target(
                                f"(sum(rate({server_errors}[5m])) or sum(rate({requests}[5m])) * 0)"
                                f" / sum(rate({requests}[5m]))",
                                "5xx",
                            ),
                        ),
                        unit="percentunit",
                    ),
                    Panel(
                        "Latency by route",
                        "Gateway handling time, p50 and p99 (not /readyz, which waits on its "
                        "probes, nor the /api/v1/events streams).",
                        (
                            Target(
                                _quantile(
                                    0.5,
                                    "ray_n1v1_api_latency_seconds_bucket",
                                    "route, le",
                                    NOT_LATENCY,
                                ),
                                "p50 {{route}}",
                            ),
                            Target(
                                _quantile(
                                    0.99,
                                    "ray_n1v1_api_latency_seconds_bucket",
                                    "route, le",
                                    NOT_LATENCY,
                                ),
                                "p99 {{route}}",
                            ),
                        ),
                        unit="s",
                    ),
                ),
            ),
            Row(
                "Models",
                (
                    Panel(
                        "Batch size",
                        "Requests per batched forward pass: mean and p99.",
                        (
                            Target(
                                "sum by (model) "
                                f"(rate({c('ray_n1v1_inference_batch_size_sum')}[5m])) "
                                f"/ sum by (model) (rate({batches}[5m]))",
                                "mean {{model}}",
                            ),
                            Target(
                                _quantile(
                                    0.99, "ray_n1v1_inference_batch_size_bucket", "model, le"
                                ),
                                "p99 {{model}}",
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Inference latency",
                        "One batched forward pass, p50 and p99.",
                        (
                            Target(
                                _quantile(
                                    0.5, "ray_n1v1_inference_latency_seconds_bucket", "model, le"
                                ),
                                "p50 {{model}}",
                            ),
                            Target(
                                _quantile(
                                    0.99, "ray_n1v1_inference_latency_seconds_bucket", "model, le"
                                ),
                                "p99 {{model}}",
                            ),
                        ),
                        unit="s",
                        width=8,
                    ),
                    Panel(
                        "Inference errors (10 min)",
                        "Requests a loaded model could not answer, by reason; 0 for a model "
                        "that served without error.",
                        (
                            Target(
                                f"sum by (model, reason) ({recent(inference_errors, '10m')}) "
                                f"or sum by (model) (increase({batches}[10m])) * 0",
                                "{{model}} {{reason}}",
                            ),
                        ),
                        width=8,
                    ),
                ),
            ),
            Row(
                "Serve",
                (
                    Panel(
                        "Replicas per deployment",
                        "Healthy replicas (Ray Serve's own metric).",
                        (
                            Target(
                                "sum by (application, deployment) "
                                f"({c('ray_serve_deployment_replica_healthy')})",
                                "{{application}} {{deployment}}",
                            ),
                        ),
                    ),
                    Panel(
                        "Deployment status",
                        "Ray Serve's status: 6 HEALTHY, 4 UPSCALING, 5 DOWNSCALING, 3 UPDATING, "
                        "2 UNHEALTHY, 1 DEPLOY_FAILED.",
                        (
                            Target(
                                "min by (application, deployment) "
                                f"({c('ray_serve_deployment_status')})",
                                "{{application}} {{deployment}}",
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


def _training() -> Dashboard:
    runs = c("ray_n1v1_training_runs_total")
    epochs = c("ray_n1v1_training_epochs_total")
    return Dashboard(
        uid="n1v1-training",
        title="N1V1 Training",
        description="Training runs (Ray Train) and the model registry's versions and promotions.",
        cluster_metric="ray_n1v1_model_versions",
        rows=(
            Row(
                "Training runs",
                (
                    Panel(
                        "Runs by outcome",
                        "Training runs that ended (succeeded: trained and registered; failed: "
                        "raised), counted since the Ray node of their driver started.",
                        (Target(f"sum by (model, outcome) ({runs})", "{{model}} {{outcome}}"),),
                        width=8,
                    ),
                    Panel(
                        "Epochs trained",
                        "Epochs reported by the runs of each model, since the Ray node started.",
                        (Target(f"sum by (model) ({epochs})", "{{model}}"),),
                        width=8,
                    ),
                    Panel(
                        "Validation AUC",
                        "The last epoch's validation AUC (while a run trains).",
                        (
                            Target(
                                f"max by (model) ({c('ray_n1v1_training_val_auc')})", "{{model}}"
                            ),
                        ),
                        width=8,
                    ),
                    Panel(
                        "Loss",
                        "The last epoch's mean loss per split (while a run trains).",
                        (
                            Target(
                                f"max by (model, split) ({c('ray_n1v1_training_loss')})",
                                "{{model}} {{split}}",
                            ),
                        ),
                        width=24,
                    ),
                ),
            ),
            Row(
                "Registry",
                (
                    Panel(
                        "Versions",
                        "Complete versions in the registry.",
                        (Target(f"max by (model) ({c('ray_n1v1_model_versions')})", "{{model}}"),),
                        type="stat",
                        width=6,
                    ),
                    Panel(
                        "Promoted version",
                        "The number of the version the Serve app serves.",
                        (
                            Target(
                                f"max by (model) ({c('ray_n1v1_model_promoted_version')})",
                                "{{model}}",
                            ),
                        ),
                        type="stat",
                        width=6,
                    ),
                    Panel(
                        "Promotions",
                        "Promotions recorded in the registry's history.",
                        (
                            Target(
                                f"max by (model) ({c('ray_n1v1_model_promotions')})", "{{model}}"
                            ),
                        ),
                        type="stat",
                        width=6,
                    ),
                    Panel(
                        "Promoted model age",
                        "Time since the promoted version was trained (alert at "
                        f"{MODEL_MAX_AGE_DAYS} days).",
                        (
                            Target(
                                "time() - max by (model) "
                                f"({c('ray_n1v1_model_promoted_trained_timestamp_seconds')})",
                                "{{model}}",
                            ),
                        ),
                        unit="s",
                        type="stat",
                        width=6,
                    ),
                ),
            ),
        ),
    )


DASHBOARDS: tuple[Dashboard, ...] = (_trading(), _serving(), _training())
