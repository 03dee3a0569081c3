"""Training metrics through `ray.util.metrics`, recorded by the driver of a training run.

Ray 2.60 exports metrics recorded in a driver like those of its workers: through the node's
metrics agent, at the node's metrics export port (tests/test_monitoring_prometheus.py scrapes them
from a real Prometheus). Counters stay in the agent after the driver exits, so a finished run's
outcome can still be scraped and alerted on. Ray drops a gauge that has not been set for two
export intervals (20 s by default), so while a run trains its loss gauges are set again every
5 s (epochs can be longer than that); they disappear about 20 s after the run ends: they show a
run while it trains.

`run_training` (n1v1/ml/train.py) reports through `TrainingMetrics`, so every way of training
(`n1v1 train`, `jobs/train.py`, the scheduled `jobs/retrain.py`) is counted without a call of its
own. Names, types and tags are in the catalogue (n1v1/monitoring/catalog.py).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from typing import Any

import ray
from ray.util.metrics import Counter, Gauge

from n1v1.monitoring.catalog import BY_NAME

OUTCOMES = ("succeeded", "failed")
REFRESH_S = 5.0


@functools.cache
def _metrics() -> dict[str, Any]:
    def spec(name: str) -> tuple[str, str, tuple[str, ...]]:
        m = BY_NAME[name]
        assert m.source == "training", name
        return m.name, m.help, m.tags

    counters = ("n1v1_training_runs", "n1v1_training_epochs")
    gauges = ("n1v1_training_loss", "n1v1_training_val_auc")
    made: dict[str, Any] = {}
    for name in counters:
        n, h, tags = spec(name)
        made[name] = Counter(n, h, tag_keys=tags)
    for name in gauges:
        n, h, tags = spec(name)
        made[name] = Gauge(n, h, tag_keys=tags)
    return made


class TrainingMetrics:
    """One training run of `model`. Records nothing while this process is not connected to Ray
    (there is no metrics agent to send to yet: a run that fails before Ray starts)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._done = threading.Event()
        self._refresher: threading.Thread | None = None

    def on_epoch(self, event: Mapping[str, Any]) -> None:
        """A progress event of `run_training` ("epoch": rank 0's metrics of one epoch)."""
        if not ray.is_initialized() or event.get("event") != "epoch":
            return
        tags = {"model": self.model}
        _metrics()["n1v1_training_epochs"].inc(1, tags=tags)
        for split, key in (("train", "train_loss"), ("validation", "val_loss")):
            self._gauge("n1v1_training_loss", event.get(key), {**tags, "split": split})
        self._gauge("n1v1_training_val_auc", event.get("val_auc"), tags)
        if self._refresher is None:
            self._refresher = threading.Thread(
                target=self._refresh, name="n1v1-train-metrics", daemon=True
            )
            self._refresher.start()

    def finished(self, outcome: str) -> None:
        """`succeeded` (run_training returned) or `failed` (it raised)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome: expected one of {OUTCOMES}, got {outcome!r}")
        self._done.set()
        if ray.is_initialized():
            tags = {"model": self.model, "outcome": outcome}
            _metrics()["n1v1_training_runs"].inc(1, tags=tags)

    def _gauge(self, name: str, value: object, tags: dict[str, str]) -> None:
        if isinstance(value, int | float) and math.isfinite(value):
            _metrics()[name].set(float(value), tags=tags)
            self._gauges[(name, tuple(sorted(tags.items())))] = float(value)

    def _refresh(self) -> None:
        """Set the last loss and AUC again every REFRESH_S until the run ends (module docstring)."""
        while not self._done.wait(REFRESH_S):
            for (name, tags), value in list(self._gauges.items()):
                _metrics()[name].set(value, tags=dict(tags))
