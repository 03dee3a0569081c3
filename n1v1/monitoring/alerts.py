"""The Prometheus alert rules: what each watches, when it fires, and what it tells the operator.

Generated into kuberay/monitoring/prometheus-rule.yaml (a PrometheusRule) and
kuberay/monitoring/rules/n1v1-alerts.yaml (the same group as a plain rule file, for promtool,
`make observe` and the real-Prometheus test) by `python -m n1v1.monitoring.generate`.

Every rule groups by `namespace` (one N1V1 per namespace; a local Prometheus has no such label and
sees one group). Each alert also names its `probes`: the expressions it compares with its
threshold, which tests/test_monitoring_prometheus.py evaluates against a real Prometheus scraping
a real paper session and requires to return series (an alert expression itself returns nothing
while it does not fire). Each probe is a verbatim part of the expression (a static test checks it).
Thresholds are the constants below; docs/monitoring.md has a runbook section per alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from n1v1.monitoring.promql import max_by, recent, sel

RUNBOOK = "docs/monitoring.md#runbook-{anchor}"  # relative to the repository (see the docs)

DECISION_P99_BUDGET_S = 0.5  # a bar's decisions, p99 over 10 minutes
API_5XX_RATIO = 0.05  # share of requests answered 5xx over 5 minutes
API_P99_S = 1.0  # per route, over 10 minutes (the routes below excluded)
# Routes whose time is not a latency: /readyz waits on its probes, /api/v1/events is a stream
# that lasts event_stream_s by design.
NOT_LATENCY = 'route!~"/readyz|/api/v1/events"'
STALL_INTERVALS = 3  # feed intervals without a step before the feed counts as stalled
STALL_FLOOR_S = 120  # never sooner: a scrape and Ray's export each lag by up to ~30 s
UNKNOWN_FOR = "5m"  # far beyond the grace window: an order neither found nor ruled out
STORE_OUTAGE_FOR = "1m"  # an outage shorter than this resumes unseen: the engine retries alone
STANDBY_MAX = "15m"  # an upgrade's new engine stands by for a minute or two, not this long
ORDER_REJECTIONS_10M = 3  # orders the venue rejected in 10 minutes
RISK_REJECTIONS_10M = 30  # entries a risk rule refused in 10 minutes
TRAINING_FAILED_WINDOW = "1h"  # how long a failed training run keeps its alert firing
MODEL_MAX_AGE_DAYS = 7  # a week of daily retraining (the RayCronJob) without a promotion
PREDICTION_FAILURE_RATIO = 0.05  # an ml_signal slot's model calls that failed, over 10 minutes
SHORTFALL_ALERT_BPS = 50.0  # parents' implementation shortfall (paper-value weighted), in bps

Severity = Literal["critical", "warning"]


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    expr: str
    probes: tuple[str, ...]
    for_: str
    severity: Severity
    summary: str
    description: str

    @property
    def runbook_url(self) -> str:
        return RUNBOOK.format(anchor=f"{self.name.lower()}")

    def rule(self) -> dict[str, object]:
        """The rule as Prometheus' rule files (and a PrometheusRule's spec.groups) hold it."""
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.for_,
            "labels": {"severity": self.severity},
            "annotations": {
                "summary": self.summary,
                "description": self.description,
                "runbook_url": self.runbook_url,
            },
        }


def _alerts() -> tuple[Alert, ...]:
    state = "ray_n1v1_engine_state"
    acting = max_by("namespace", sel(state, 'state=~"running|replay_finished"'))
    running = max_by("namespace", sel(state, 'state="running"'))
    standby = max_by("namespace", sel(state, 'state="standby"'))
    holders = "sum by (namespace) (ray_n1v1_engine_lease_held)"
    store_available = "min by (namespace) (ray_n1v1_store_available)"
    reconciled = "min by (namespace) (ray_n1v1_venue_reconciled)"
    unknown = "max by (namespace) (ray_n1v1_venue_orders_unknown)"
    step_age = "time() - max by (namespace) (ray_n1v1_last_step_timestamp_seconds)"
    stall_limit = (
        f"clamp_min({STALL_INTERVALS} * max by (namespace) (ray_n1v1_feed_interval_seconds), "
        f"{STALL_FLOOR_S})"
    )
    decision_p99 = (
        "histogram_quantile(0.99, sum by (namespace, le) "
        "(rate(ray_n1v1_decision_latency_seconds_bucket[10m])))"
    )
    requests = "ray_n1v1_api_requests_total"
    all_rate = f"sum by (namespace) (rate({requests}[5m]))"
    errors = sel(requests, 'status=~"5.."')
    error_ratio = f"(sum by (namespace) (rate({errors}[5m])) or {all_rate} * 0) / {all_rate}"
    latency = sel("ray_n1v1_api_latency_seconds_bucket", NOT_LATENCY)
    api_p99 = f"histogram_quantile(0.99, sum by (namespace, route, le) (rate({latency}[10m])))"
    halted = "ray_n1v1_trading_halted"
    kill_switch = max_by("namespace", sel(halted, 'rule="kill_switch"'))
    breaker = max_by("namespace, rule", sel(halted, 'rule=~"circuit_breaker|max_daily_loss"'))
    rejected = "ray_n1v1_orders_rejected_total"
    submitted = "ray_n1v1_orders_submitted_total"
    order_rejections = (
        f"(sum by (namespace) ({recent(rejected, '10m')}) "
        f"or sum by (namespace) (increase({submitted}[10m])) * 0)"
    )
    risk_rejections = f"sum by (namespace) ({recent('ray_n1v1_risk_rejections_total', '10m')})"
    inference_errors = (
        f"sum by (namespace, model, reason) ({recent('ray_n1v1_inference_errors_total', '10m')})"
    )
    predictions = "ray_n1v1_model_predictions_total"
    called = sel(predictions, 'outcome!="not_ready"')
    asked = f"sum by (namespace, strategy) (rate({called}[10m]))"
    failed_predictions = sel(predictions, 'outcome=~"timeout|error|mismatch"')
    prediction_failures = (
        f"(sum by (namespace, strategy) (rate({failed_predictions}[10m])) or {asked} * 0) / {asked}"
    )
    deployment_status = (
        "min by (namespace, ray_io_cluster, application, deployment) (ray_serve_deployment_status)"
    )
    app_status = "min by (namespace, ray_io_cluster, application) (ray_serve_application_status)"
    failed_runs = sel("ray_n1v1_training_runs_total", 'outcome="failed"')
    training_failures = f"sum by (namespace, model) ({recent(failed_runs, TRAINING_FAILED_WINDOW)})"
    model_age = (
        "time() - max by (namespace, model) (ray_n1v1_model_promoted_trained_timestamp_seconds)"
    )
    shortfall = "max by (namespace, algo) (ray_n1v1_algo_shortfall_bps)"
    return (
        Alert(
            "N1V1EngineNotRunning",
            f"{acting} < 1 or absent({state})",
            (acting,),
            "2m",
            "critical",
            "No N1V1 engine is trading",
            "No engine replica has been running for 2 minutes (or none reports its state at "
            "all): no bar is traded and no command is applied.",
        ),
        Alert(
            "N1V1EngineStandbyTooLong",
            f"{standby} == 1",
            (standby,),
            STANDBY_MAX,
            "warning",
            "An N1V1 engine has stood by for " + STANDBY_MAX,
            "An engine replica has waited for the store's lease for " + STANDBY_MAX + ": "
            "another engine holds it (an old cluster left running after an upgrade, or another "
            "deployment on the same store).",
        ),
        Alert(
            "N1V1StoreUnavailable",
            f"{store_available} == 0",
            (store_available,),
            STORE_OUTAGE_FOR,
            "critical",
            "The N1V1 engine cannot reach its database",
            "The engine has not reached its store for " + STORE_OUTAGE_FOR + ": it trades "
            "nothing (no order can be journaled) and refuses commands with 503; it resumes by "
            "itself once the database answers.",
        ),
        Alert(
            "N1V1VenueOutOfBalance",
            f"{reconciled} == 0",
            (reconciled,),
            "0m",
            "critical",
            "N1V1's books disagree with the exchange",
            "The last reconciliation found a position that differs from the exchange's balance "
            "beyond the market's precision; the engine has paused new entries until an operator "
            "acts (the status's venue.reconciliation names each difference).",
        ),
        Alert(
            "N1V1OrdersUnknown",
            f"{unknown} > 0",
            (unknown,),
            UNKNOWN_FOR,
            "warning",
            "{{ $value }} N1V1 orders have an unknown outcome",
            "Orders whose create call failed ambiguously have not been found or ruled out at the "
            "exchange for " + UNKNOWN_FOR + ": their symbols make no new decision meanwhile.",
        ),
        Alert(
            "N1V1LeaseHoldersNotOne",
            f"{holders} != 1",
            (holders,),
            "2m",
            "critical",
            "{{ $value }} N1V1 engines hold the lease",
            "Exactly one engine should hold the store's lease and trade; {{ $value }} report "
            "holding it.",
        ),
        Alert(
            "N1V1FeedStalled",
            f"{step_age} > {stall_limit} and on (namespace) {running} == 1",
            (step_age, stall_limit, running),
            "1m",
            "critical",
            "N1V1 has processed no bar for {{ $value | humanizeDuration }}",
            f"The running engine's last step finished {{{{ $value | humanizeDuration }}}} ago, "
            f"more than {STALL_INTERVALS} feed intervals (and at least {STALL_FLOOR_S} s): the "
            "feed delivers no bars or the engine loop hangs.",
        ),
        Alert(
            "N1V1DecisionLatencyHigh",
            f"{decision_p99} > {DECISION_P99_BUDGET_S}",
            (decision_p99,),
            "10m",
            "warning",
            "N1V1 decision latency p99 is {{ $value | humanizeDuration }}",
            f"The 99th percentile of the time from a bar's arrival to the engine's decisions "
            f"over 10 minutes is {{{{ $value | humanizeDuration }}}}, over the budget of "
            f"{DECISION_P99_BUDGET_S:g} s.",
        ),
        Alert(
            "N1V1ApiErrorRatioHigh",
            f"{error_ratio} > {API_5XX_RATIO}",
            (error_ratio,),
            "5m",
            "critical",
            "{{ $value | humanizePercentage }} of N1V1 API requests fail with 5xx",
            f"Over 5 minutes {{{{ $value | humanizePercentage }}}} of the gateway's requests "
            f"were answered with a 5xx status (threshold {API_5XX_RATIO:.0%}).",
        ),
        Alert(
            "N1V1ApiLatencyHigh",
            f"{api_p99} > {API_P99_S}",
            (api_p99,),
            "10m",
            "warning",
            "N1V1 API p99 latency on {{ $labels.route }} is {{ $value | humanizeDuration }}",
            f"The 99th percentile of the gateway's handling time for {{{{ $labels.route }}}} over "
            f"10 minutes is {{{{ $value | humanizeDuration }}}} (threshold {API_P99_S:g} s).",
        ),
        Alert(
            "N1V1KillSwitchEngaged",
            f"{kill_switch} == 1",
            (kill_switch,),
            "1m",
            "warning",
            "The N1V1 kill switch is engaged",
            "The kill switch cancelled the working orders and flattened the positions; the "
            "engine opens nothing until an operator resumes with reset_kill_switch=true.",
        ),
        Alert(
            "N1V1CircuitBreakerTripped",
            f"{breaker} == 1",
            (breaker,),
            "1m",
            "critical",
            "N1V1 trading is halted by {{ $labels.rule }}",
            "The {{ $labels.rule }} rule refuses new entries: the drawdown or the run of losing "
            "trades reached its limit (circuit_breaker), or the day's loss did (max_daily_loss).",
        ),
        Alert(
            "N1V1OrderRejections",
            f"{order_rejections} > {ORDER_REJECTIONS_10M}",
            (order_rejections,),
            "0m",
            "warning",
            "The venue rejected {{ $value }} N1V1 orders in 10 minutes",
            f"{{{{ $value }}}} orders were rejected by the venue within 10 minutes (threshold "
            f"{ORDER_REJECTIONS_10M}).",
        ),
        Alert(
            "N1V1RiskRejectionsBurst",
            f"{risk_rejections} > {RISK_REJECTIONS_10M}",
            (risk_rejections,),
            "0m",
            "warning",
            "Risk rules refused {{ $value }} N1V1 entries in 10 minutes",
            f"{{{{ $value }}}} entries were refused by a risk rule within 10 minutes (threshold "
            f"{RISK_REJECTIONS_10M}); the Trading dashboard shows which rule.",
        ),
        Alert(
            "N1V1InferenceErrors",
            f"{inference_errors} > 0",
            (inference_errors,),
            "0m",
            "warning",
            "Model {{ $labels.model }} failed {{ $value }} predictions ({{ $labels.reason }})",
            "Within 10 minutes the model server could not answer {{ $value }} prediction "
            "requests for {{ $labels.model }}: {{ $labels.reason }} (invalid: rows of the "
            "wrong width for the served version; failed: the forward pass raised).",
        ),
        Alert(
            "N1V1ModelPredictionsFailing",
            f"{prediction_failures} > {PREDICTION_FAILURE_RATIO}",
            (prediction_failures,),
            "5m",
            "warning",
            "{{ $value | humanizePercentage }} of {{ $labels.strategy }}'s model calls fail",
            f"Over 10 minutes {{{{ $value | humanizePercentage }}}} of the model calls of the "
            f"ml_signal slot {{{{ $labels.strategy }}}} got no usable answer (timeout, error or "
            f"mismatch; threshold {PREDICTION_FAILURE_RATIO:.0%}): the slot holds its last "
            "target or goes flat (engine.on_prediction_failure) instead of following its model.",
        ),
        Alert(
            "N1V1AlgoShortfallHigh",
            f"{shortfall} > {SHORTFALL_ALERT_BPS:g}",
            (shortfall,),
            "15m",
            "warning",
            '{{ $labels.algo }} parents cost {{ $value | printf "%.1f" }} bps',
            f"The newest finished {{{{ $labels.algo }}}} parent orders cost "
            f'{{{{ $value | printf "%.1f" }}}} bps of implementation shortfall against '
            f"their arrival prices (weighted by paper value; threshold {SHORTFALL_ALERT_BPS:g} "
            "bps) for 15 minutes: slices too large for the market, a duration too long for a "
            "moving price, or unfilled parents marked at a price that ran away.",
        ),
        Alert(
            "N1V1ServeReplicaUnhealthy",
            f"{deployment_status} <= 2",
            (deployment_status,),
            "2m",
            "critical",
            "Serve deployment {{ $labels.deployment }} is unhealthy",
            "Ray Serve reports deployment {{ $labels.deployment }} of application "
            "{{ $labels.application }} as UNHEALTHY or DEPLOY_FAILED (status {{ $value }}) for "
            "2 minutes: its replicas fail their health checks or cannot start.",
        ),
        Alert(
            "N1V1ServeAppNotRunning",
            f"{app_status} != 6",
            (app_status,),
            "5m",
            "critical",
            "Serve application {{ $labels.application }} is not RUNNING",
            "Ray Serve reports application {{ $labels.application }} in status {{ $value }} "
            "(6 is RUNNING; 1 DEPLOY_FAILED, 2 UNHEALTHY, 5 DEPLOYING) for 5 minutes.",
        ),
        Alert(
            "N1V1TrainingFailed",
            f"{training_failures} > 0",
            (training_failures,),
            "0m",
            "warning",
            "A training run of {{ $labels.model }} failed",
            f"{{{{ $value }}}} training runs of {{{{ $labels.model }}}} failed within "
            f"{TRAINING_FAILED_WINDOW}; no new version was registered by them.",
        ),
        Alert(
            "N1V1PromotedModelStale",
            f"{model_age} > {MODEL_MAX_AGE_DAYS * 86400}",
            (model_age,),
            "1h",
            "warning",
            "The promoted {{ $labels.model }} was trained {{ $value | humanizeDuration }} ago",
            f"The promoted version of {{{{ $labels.model }}}} was trained "
            f"{{{{ $value | humanizeDuration }}}} ago, more than {MODEL_MAX_AGE_DAYS} days: "
            "retraining has not produced a version that passed the promotion gate since.",
        ),
    )


ALERTS: tuple[Alert, ...] = _alerts()
GROUP = "n1v1"


def rule_groups() -> list[dict[str, object]]:
    """`groups:` of a Prometheus rule file (also a PrometheusRule's spec)."""
    return [{"name": GROUP, "rules": [a.rule() for a in ALERTS]}]
