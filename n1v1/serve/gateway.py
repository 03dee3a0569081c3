"""The Gateway deployment: the FastAPI ingress (n1v1.serve.api) over handles to the Engine and
Model deployments. Autoscaled, with a small CPU share: it parses, checks and forwards."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import DeploymentUnavailableError, ReplicaUnavailableError
from ray.serve.handle import DeploymentHandle
from sqlalchemy import text

from n1v1.live.session import READY_STATES, CommandError
from n1v1.serve.api import create_api
from n1v1.serve.backtests import run_backtest_job
from n1v1.serve.metrics import observe_request
from n1v1.store.availability import open_store
from n1v1.store.backtests import create_backtest

_STATUS_TIMEOUT_S = 5.0
ENGINE_READ_TIMEOUT_S = 5.0  # a read the engine has not answered by then: 503, not a hang
# Serve calls replicas over gRPC: a replica killed mid-call surfaces as an actor error, or, for a
# status other than UNAVAILABLE (the stream cut while the answer was on its way), as gRPC's own.
_REPLICA_GONE = (
    RayActorError,
    ReplicaUnavailableError,
    DeploymentUnavailableError,
    grpc.aio.AioRpcError,
)
log = logging.getLogger(__name__)
T = TypeVar("T")


async def answer_of(call: Awaitable[T], what: str, timeout: float | None = None) -> T:
    """A deployment's answer, or CommandError "unavailable" (503) while its replica is replaced:
    it died under the request, or (reads, with `timeout`) none answered in time. A command is
    never timed out here: it may still be applied, and a caller told 503 could send it twice."""
    try:
        return await asyncio.wait_for(call, timeout)
    except TimeoutError:
        raise CommandError(
            "unavailable", f"{what} did not answer within {timeout:g} s (restarting?)"
        ) from None
    except _REPLICA_GONE as exc:
        raise CommandError(
            "unavailable", f"{what}: the replica stopped while answering ({type(exc).__name__})"
        ) from None


class ServeBackend:
    """The API's Backend over deployment handles (and Ray tasks for backtests)."""

    def __init__(
        self, engine: DeploymentHandle, model: DeploymentHandle, store_url: str, store: Any
    ) -> None:
        self.engine, self.model, self.store_url, self.store = engine, model, store_url, store
        self._jobs: dict[str, Any] = {}  # keeps each task's ref alive until it finishes

    async def status(self) -> dict[str, Any]:
        return await answer_of(self.engine.status.remote(), "the engine", ENGINE_READ_TIMEOUT_S)

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]:
        result = await answer_of(
            self.engine.trades.remote(symbol, limit, offset), "the engine", ENGINE_READ_TIMEOUT_S
        )
        if "error" in result:
            err = result["error"]
            raise CommandError(err["code"], err["message"], err.get("details"))
        return result

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        result = await answer_of(
            self.engine.command.remote(kind, payload, actor),
            "the engine (the command took effect only if the journal shows it)",
        )
        if "error" in result:
            err = result["error"]
            raise CommandError(err["code"], err["message"], err.get("details"))
        return result

    async def predict(self, model: str, rows: list[list[float]]) -> dict[str, Any]:
        result = await answer_of(
            self.model.options(multiplexed_model_id=model).predict.remote(rows), "the model"
        )
        if "error" in result:
            err = result["error"]
            raise CommandError(err["code"], err["message"], err.get("details"))
        return result

    async def models(self) -> dict[str, Any]:
        """The registry, and which version each ml_signal slot of the engine trades now."""
        listing, status = await asyncio.gather(
            answer_of(self.model.models.remote(), "the model", ENGINE_READ_TIMEOUT_S),
            self.status(),
        )
        in_use: dict[str, list[dict[str, Any]]] = {}
        for slot in status.get("strategies") or []:
            model = slot.get("model")
            if isinstance(model, dict):
                in_use.setdefault(model["model"], []).append({"strategy": slot["id"], **model})
        for entry in listing["models"]:
            entry["in_use"] = in_use.get(entry["name"], [])
        return listing

    async def submit_backtest(self, request: dict[str, Any], actor: str) -> str:
        job_id = "bt_" + secrets.token_hex(8)
        await asyncio.to_thread(create_backtest, self.store, job_id, request, actor)
        ref = run_backtest_job.remote(self.store_url, job_id, request)
        self._jobs[job_id] = ref
        ref.future().add_done_callback(lambda _: self._jobs.pop(job_id, None))
        return job_id

    async def ready(self) -> dict[str, bool]:
        """Each component reachable within a few seconds; why not is logged, not swallowed."""

        def store_ok() -> bool:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True

        async def engine_ok() -> bool:
            return (await self.status()).get("state") in READY_STATES

        async def check(name: str, probe: Awaitable[Any]) -> bool:
            try:
                return bool(await asyncio.wait_for(probe, _STATUS_TIMEOUT_S))
            except Exception as exc:
                log.warning("readiness: %s not reachable: %s: %s", name, type(exc).__name__, exc)
                return False

        # at once, not one after the other: three timeouts in a row outlast a prober's patience
        store, engine, model = await asyncio.gather(
            check("store", asyncio.to_thread(store_ok)),
            check("engine", engine_ok()),
            check("model", self.model.ping.remote()),
        )
        return {"store": store, "engine": engine, "model": model}


@serve.deployment(
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32},
    max_ongoing_requests=256,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress()
class Gateway:
    def __init__(
        self,
        engine: DeploymentHandle,
        model: DeploymentHandle,
        store_url: str,
        admin_token_hash: str,
        read_token_hash: str | None,
        api: dict[str, Any],
    ) -> None:
        self.store = open_store(store_url)  # may start during a database outage
        self.backend = ServeBackend(engine, model, store_url, self.store)
        self.admin_token_hash, self.read_token_hash = admin_token_hash, read_token_hash
        self.api = api

    def __serve_build_asgi_app__(self) -> Any:
        return create_api(
            self.backend,
            self.store,
            admin_token_hash=self.admin_token_hash,
            read_token_hash=self.read_token_hash,
            rate_limit_per_s=self.api["rate_limit_per_s"],
            rate_burst=self.api["rate_burst"],
            max_body_bytes=self.api["max_body_bytes"],
            anonymous_rate_per_s=self.api["anonymous_rate_per_s"],
            anonymous_burst=self.api["anonymous_burst"],
            observe_request=observe_request,
        )
