"""The Model deployment: registry models behind `@serve.batch`, several per replica by model id.

The model id (`serve.multiplexed`) is the registry name, for its promoted version, or
`name@vNNNN` for one version; each replica keeps up to four of them and swaps in a newly promoted
version between batches (`PromotedModel`; a named version never swaps).
Requests for the same model that arrive together are stacked into one forward pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from ray import serve

from n1v1.live.predictions import answers_for
from n1v1.ml.registry import ModelRegistry, RegistryError
from n1v1.ml.serving import PromotedModel, split_model_id
from n1v1.serve.metrics import (
    observe_inference,
    observe_inference_error,
    observe_registry,
    refresh_gauges,
    use_ray_metrics,
)

log = logging.getLogger(__name__)


@serve.deployment(
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 16,
        "upscale_delay_s": 5,
        "downscale_delay_s": 30,
    },
    max_ongoing_requests=128,
    ray_actor_options={"num_cpus": 0},
)
class Model:
    def __init__(
        self, model_root: str, max_batch_size: int, batch_wait_timeout_s: float, refresh_s: float
    ) -> None:
        use_ray_metrics()
        self.registry = ModelRegistry(model_root)
        self.refresh_s = refresh_s
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.multiplexed(max_num_models_per_replica=4)
    async def get_model(self, model_id: str) -> PromotedModel:
        name, version = split_model_id(model_id)
        return await asyncio.to_thread(
            PromotedModel, self.registry, name, self.refresh_s, version=version
        )

    async def _requested_model(self) -> PromotedModel | dict[str, Any]:
        """The model this request's multiplexed id names, or the API's not_found error."""
        model_id = serve.get_multiplexed_model_id()
        try:
            split_model_id(model_id)
            return await self.get_model(model_id)
        except (RegistryError, ValueError) as exc:
            return {"error": {"code": "not_found", "message": str(exc), "details": {}}}

    async def predict(self, rows: list[list[float]]) -> dict[str, Any]:
        """{"model", "version", "probabilities"} or {"error": {...}} naming what was wrong."""
        served = await self._requested_model()
        if isinstance(served, dict):
            return served
        loaded = served.current()
        if any(len(r) != loaded.n_features for r in rows):
            bad = next(i for i, r in enumerate(rows) if len(r) != loaded.n_features)
            observe_inference_error(loaded.name, "invalid")
            message = (
                f"rows.{bad}: expected {loaded.n_features} features for "
                f"{loaded.name}/{loaded.version}, got {len(rows[bad])}"
            )
            return {
                "error": {
                    "code": "invalid",
                    "message": message,
                    # the API's 422 shape: details.fields[].field names each bad field
                    "details": {
                        "fields": [{"field": f"body.rows.{bad}", "message": message}],
                        "n_features": loaded.n_features,
                    },
                }
            }
        return await self._batched(served, rows)

    async def predict_last(self, sets: list[list[list[float]]]) -> dict[str, Any]:
        """The Engine's call (n1v1/serve/predictor.py): for each set of rows (one symbol's: one
        row for an MLP, the window for a sequence model) the probabilities of its last row, with
        the version that computed them and its feature hash and threshold. One call carries
        every symbol of a bar, so it is one forward pass already: no `serve.batch` wait."""
        served = await self._requested_model()
        if isinstance(served, dict):
            return served
        loaded = served.current()
        bad = next((i for i, rows in enumerate(sets) if _width(rows) != loaded.n_features), None)
        if bad is not None:
            observe_inference_error(loaded.name, "invalid")
            message = f"sets.{bad}: expected rows of {loaded.n_features} features"
            return {"error": {"code": "invalid", "message": message, "details": {}}}
        started = time.perf_counter()
        try:
            answers = await asyncio.to_thread(answers_for, loaded, [np.asarray(s) for s in sets])
        except Exception:
            observe_inference_error(loaded.name, "failed")
            raise
        observe_inference(loaded.name, time.perf_counter() - started, len(sets))
        return {"answers": [asdict(a) for a in answers]}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def _batched(
        self, served: list[PromotedModel], rows: list[list[list[float]]]
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in rows]
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(served):
            groups.setdefault(f"{s.name}@{s.current().version}", []).append(i)
        for members in groups.values():
            loaded = served[members[0]].current()
            name = loaded.name
            started = time.perf_counter()
            try:
                if loaded.kind == "mlp":  # rows of all requests in one forward pass
                    stacked = np.asarray([r for i in members for r in rows[i]], dtype=np.float64)
                    probs = loaded.predict_proba(stacked)
                else:  # a sequence model's window must not span two requests
                    probs = np.concatenate(
                        [
                            loaded.predict_proba(np.asarray(rows[i], dtype=np.float64))
                            for i in members
                        ]
                    )
            except Exception:
                observe_inference_error(name, "failed")
                raise
            observe_inference(name, time.perf_counter() - started, len(members))
            at = 0
            for i in members:
                n = len(rows[i])
                block = probs[at : at + n]
                at += n
                out[i] = {
                    "model": name,
                    "version": loaded.version,
                    "threshold": loaded.threshold,
                    "probabilities": [
                        [None if np.isnan(v) else float(v) for v in row] for row in block
                    ],
                }
        return out

    async def models(self) -> dict[str, Any]:
        def listing() -> dict[str, Any]:
            return {
                "models": [
                    {
                        "name": name,
                        "promoted": self.registry.promoted_version(name),
                        "versions": self.registry.list_versions(name),
                    }
                    for name in self.registry.list_models()
                ]
            }

        return await asyncio.to_thread(listing)

    async def ping(self) -> bool:
        return True

    async def check_health(self) -> None:
        """Serve's periodic health check (every 10 s) also refreshes the registry metrics:
        versions, promotions, the promoted version and its training time, read off the event loop.
        A registry that cannot be read is logged, never a failed check: the replica can still
        serve the models it holds."""

        def stats() -> dict[str, dict[str, float | None]]:
            out = {}
            for name in self.registry.list_models():
                try:
                    out[name] = self.registry.stats(name)
                except (RegistryError, OSError) as exc:
                    log.warning("registry metrics of %s: %s", name, exc)
            return out

        observe_registry(await asyncio.to_thread(stats))
        refresh_gauges()


def _width(rows: list[list[float]]) -> int | None:
    """The common width of a set's rows, None when empty or ragged."""
    widths = {len(r) for r in rows}
    return widths.pop() if len(widths) == 1 else None
