"""The metrics of a session run without Ray (`n1v1 live`), on a Prometheus endpoint of its own.

The same catalogue (n1v1/monitoring/catalog.py) and the same recording code
(n1v1/monitoring/recorder.py) as the Serve app, with prometheus-client underneath instead of
`ray.util.metrics`. Each metric is exported under the name Ray's exporter gives it (`ray_` prefix,
counters with `_total`), so the dashboards and alert rules read a single-machine deployment
unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import prometheus_client as prom

from n1v1.monitoring.catalog import PROMETHEUS_PREFIX, MetricSpec
from n1v1.monitoring.recorder import set_backend


class _Metric:
    """ray.util.metrics' call shape (`inc`/`set`/`observe` with `tags=`) over prometheus-client."""

    def __init__(self, spec: MetricSpec, registry: prom.CollectorRegistry) -> None:
        name, labels = PROMETHEUS_PREFIX + spec.name, list(spec.tags)
        if spec.kind == "counter":
            self._m: Any = prom.Counter(name, spec.help, labels, registry=registry)
        elif spec.kind == "gauge":
            self._m = prom.Gauge(name, spec.help, labels, registry=registry)
        else:
            buckets = [*spec.boundaries, float("inf")]
            self._m = prom.Histogram(name, spec.help, labels, buckets=buckets, registry=registry)
        self._labelled = bool(labels)

    def _child(self, tags: Mapping[str, str] | None) -> Any:
        return self._m.labels(**tags) if self._labelled else self._m

    def inc(self, value: float = 1.0, tags: Mapping[str, str] | None = None) -> None:
        self._child(tags).inc(value)

    def set(self, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._child(tags).set(value)

    def observe(self, value: float, tags: Mapping[str, str] | None = None) -> None:
        self._child(tags).observe(value)


REGISTRY = prom.CollectorRegistry()


def use_prometheus_client() -> None:
    """Record this process's metrics with prometheus-client (before any is used)."""
    set_backend(_factory)


def _factory(spec: MetricSpec) -> _Metric:
    return _Metric(spec, REGISTRY)


def serve_metrics(port: int, host: str = "127.0.0.1") -> Any:
    """Start the /metrics endpoint; returns the server (its `shutdown()` stops it)."""
    server, _thread = prom.start_http_server(port, addr=host, registry=REGISTRY)
    return server
