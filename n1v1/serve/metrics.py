"""The Serve app's metrics through `ray.util.metrics`, exported by Ray's Prometheus endpoint.

What is measured, and when, lives in n1v1/monitoring/recorder.py (shared with `n1v1 live`, which
exports the same catalogue through prometheus-client); this module only makes each metric Ray's.
Importing it chooses Ray as this process's backend.
"""

from __future__ import annotations

from typing import Any

from ray.util.metrics import Counter, Gauge, Histogram

from n1v1.monitoring.catalog import MetricSpec
from n1v1.monitoring.recorder import (
    ENGINE_STATES,
    HALT_RULES,
    MetricsJournal,
    metrics,
    observe_engine,
    observe_feed_interval,
    observe_inference,
    observe_inference_error,
    observe_predictions,
    observe_registry,
    observe_request,
    observe_step,
    refresh_gauges,
    set_backend,
)

__all__ = [
    "ENGINE_STATES",
    "HALT_RULES",
    "MetricsJournal",
    "metrics",
    "observe_engine",
    "observe_feed_interval",
    "observe_inference",
    "observe_inference_error",
    "observe_predictions",
    "observe_registry",
    "observe_request",
    "observe_step",
    "refresh_gauges",
    "use_ray_metrics",
]


def _create(spec: MetricSpec) -> Any:
    if spec.kind == "counter":
        return Counter(spec.name, spec.help, tag_keys=spec.tags)
    if spec.kind == "gauge":
        return Gauge(spec.name, spec.help, tag_keys=spec.tags)
    return Histogram(spec.name, spec.help, boundaries=list(spec.boundaries), tag_keys=spec.tags)


def use_ray_metrics() -> None:
    """Make this process's metrics Ray's. Each replica's constructor calls it: Serve may ship a
    deployment's class by value, and then this module's import (which calls it too) never runs
    in the replica."""
    set_backend(_create)


use_ray_metrics()
