"""The Gateway deployment: the FastAPI ingress (n1v1.serve.api) over handles to the Engine and
Model deployments. Autoscaled, with a small CPU share: it parses, checks and forwards.

Reads of the engine's status (status, positions, strategies, risk, the models' `in_use`) are
served from the status the Engine last published, which each Gateway replica follows with one
long poll (`PublishedStatus`), not with a round trip per request: a status request then costs
the Gateway its HTTP handling only, and the Engine nothing (docs/serve.md, "Status reads").
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle
from sqlalchemy import text

from n1v1.live.session import READY_STATES, CommandError
from n1v1.serve.api import create_api
from n1v1.serve.backtests import run_backtest_job
from n1v1.serve.metrics import observe_request, use_ray_metrics
from n1v1.store.availability import open_store
from n1v1.store.backtests import create_backtest

_STATUS_TIMEOUT_S = 5.0
ENGINE_READ_TIMEOUT_S = 5.0  # a read the engine has not answered by then: 503, not a hang
# Serve calls replicas over gRPC: a replica killed mid-call surfaces as an actor error, as one of
# Serve's own (replica or deployment unavailable; or, when the router cannot tell the dead actor
# was this replica, a bare RayServeException wrapping ActorDiedError), or, for a status other than
# UNAVAILABLE (the stream cut while the answer was on its way), as gRPC's own.
_REPLICA_GONE = (RayActorError, RayServeException, grpc.aio.AioRpcError)
# The Engine answers a long poll within STATUS_HOLD_S even when nothing changed; a follower that
# has heard nothing for STATUS_FRESH_S stops serving what it holds (the engine may be gone).
STATUS_HOLD_S = 1.0
STATUS_FRESH_S = 3.0
STATUS_WARM_UP_S = 5.0  # a new replica waits this long at most for the engine's first answer
_RETRY_S = 0.5
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


def _newer(version: str, than: str | None) -> bool:
    """Versions are "<engine replica epoch>:<count>": a count is only comparable within one
    replica's epoch, and another epoch is a successor replica, whose status wins."""
    if than is None:
        return True
    epoch, _, count = version.partition(":")
    old_epoch, _, old_count = than.partition(":")
    return epoch != old_epoch or int(count) > int(old_count)


class PublishedStatus:
    """The newest status the Engine published, as this Gateway replica last heard it.

    A background task holds one `Engine.wait_status` call at a time, which returns as soon as the
    engine publishes a new status (every step, command and change of state), or after
    STATUS_HOLD_S with nothing new. `current()` hands out the status it holds while the engine
    answered within STATUS_FRESH_S; before the first answer, while the follower fails, or once
    the engine has been silent for STATUS_FRESH_S, it returns None and the caller asks the
    engine itself: a dead or hung engine is never reported as running from memory. The Gateway
    waits for the first answer in its constructor (`warm_up`), so a new replica takes traffic
    with the status in hand. A status is at most one poll round trip behind the engine's
    publication (milliseconds), which is within one engine step at any paced feed.
    """

    def __init__(self, engine: DeploymentHandle) -> None:
        self.engine = engine
        self.version: str | None = None
        self.snapshot: dict[str, Any] | None = None
        self.heard = -float("inf")  # time.monotonic() of the engine's last answer
        self.failing = False  # the last call to the engine failed
        self._answered: asyncio.Event | None = None  # set once heard since the last failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Follow from now on (again, should the task have ended); in the replica's loop."""
        if self._task is None or self._task.done():
            self._answered = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._follow())

    def _fresh(self) -> dict[str, Any] | None:
        if self.snapshot is not None and time.monotonic() - self.heard <= STATUS_FRESH_S:
            return self.snapshot
        return None

    async def warm_up(self, timeout_s: float) -> bool:
        """Start following and wait up to `timeout_s` for the engine's first answer."""
        self.start()
        assert self._answered is not None
        try:
            await asyncio.wait_for(self._answered.wait(), timeout_s)
        except TimeoutError:
            log.info("status follower: no answer from the engine yet; reads ask it directly")
            return False
        return True

    def current(self) -> dict[str, Any] | None:
        self.start()
        return self._fresh()

    def take(self, answer: tuple[str, dict[str, Any]] | None) -> None:
        """Keep an answer of `wait_status` unless it is older than what is held (the long poll
        and `refresh` can cross)."""
        self.heard = time.monotonic()
        if answer is not None and _newer(answer[0], self.version):
            self.version, self.snapshot = answer
        if self._answered is not None:
            self._answered.set()

    def _lost(self) -> None:
        self.heard = -float("inf")
        self.failing = True
        if self._answered is not None:
            self._answered.clear()

    async def refresh(self) -> None:
        """Catch up at once (after a command: its caller must see its effect in the next read).
        Failing that, forget what is held, so the next read asks the engine itself."""
        try:
            self.take(await self.engine.wait_status.remote(self.version, 0.0))
        except Exception as exc:
            self._lost()
            log.warning("status refresh after a command: %s: %s", type(exc).__name__, exc)

    async def _follow(self) -> None:
        while True:
            try:
                answer = await asyncio.wait_for(self._ask(), STATUS_HOLD_S + _STATUS_TIMEOUT_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # engine replica gone or restarting: ask it directly
                if not self.failing:
                    log.warning("status follower: %s: %s", type(exc).__name__, exc)
                self._lost()
                await asyncio.sleep(_RETRY_S)
                continue
            if self.failing:
                log.info("status follower: the engine answers again")
            self.failing = False
            self.take(answer)

    async def _ask(self) -> tuple[str, dict[str, Any]] | None:
        return await self.engine.wait_status.remote(self.version, STATUS_HOLD_S)


class ServeBackend:
    """The API's Backend over deployment handles (and Ray tasks for backtests)."""

    def __init__(
        self,
        engine: DeploymentHandle,
        model: DeploymentHandle,
        store_url: str,
        store: Any,
        upload_dir: str | None = None,
    ) -> None:
        self.engine, self.model, self.store_url, self.store = engine, model, store_url, store
        self.upload_dir = upload_dir
        self.published = PublishedStatus(engine)
        self._jobs: dict[str, Any] = {}  # keeps each task's ref alive until it finishes

    async def status(self) -> dict[str, Any]:
        """The followed status (the same object until the engine publishes another, which lets
        the API render it once), else the engine's own answer."""
        snapshot = self.published.current()
        if snapshot is not None:
            return snapshot
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
        # The engine published the command's effect before answering: fetch that status now, so
        # a read through this replica right after the answer sees it (docs/serve.md).
        await self.published.refresh()
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
        ref = run_backtest_job.remote(self.store_url, job_id, request, self.upload_dir)
        self._jobs[job_id] = ref
        ref.future().add_done_callback(lambda _: self._jobs.pop(job_id, None))
        return job_id

    async def ready(self) -> dict[str, bool]:
        """Each component reachable within a few seconds; why not is logged, not swallowed."""

        def store_ok() -> bool:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True

        async def engine_ok() -> bool:  # the engine itself, never the followed status
            return (await self.engine.status.remote()).get("state") in READY_STATES

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


# Overload sheds, it does not queue into timeouts: each replica works on at most
# MAX_ONGOING_REQUESTS, each proxy holds at most MAX_QUEUED_REQUESTS more for the Gateway, and
# Serve's proxy answers any request beyond that at once with 503 and `Retry-After` (docs/serve.md,
# "Overload"); no request waits behind more than 64 + 64 others per replica. The replica's own
# limit is the larger one on purpose: a request waiting in the proxy's queue is placed by the
# proxy polling the replicas' queue lengths, which on this 2-core machine left the Gateway idle
# half the time (32 ongoing: 59 status requests a second at 64 clients, against 173 with 64),
# while one waiting inside the replica is served as soon as the event loop gets to it.
MAX_ONGOING_REQUESTS = 64
MAX_QUEUED_REQUESTS = 64
RETRY_AFTER_S = 1
BACKPRESSURE = {"status_code": 503, "retry_after_s": RETRY_AFTER_S}


@serve.deployment(
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 32},
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    max_queued_requests=MAX_QUEUED_REQUESTS,
    backpressure_config=BACKPRESSURE,
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress()
class Gateway:
    async def __init__(
        self,
        engine: DeploymentHandle,
        model: DeploymentHandle,
        store_url: str,
        admin_token_hash: str,
        read_token_hash: str | None,
        api: dict[str, Any],
        upload_dir: str | None = None,
    ) -> None:
        use_ray_metrics()
        self.store = open_store(store_url)  # may start during a database outage
        self.upload_dir = upload_dir
        if upload_dir is not None:  # there from the start, for the operator to copy files into
            try:
                Path(upload_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # listed as empty until it exists; the app serves on
                log.warning("upload_dir %s cannot be created: %s", upload_dir, exc)
        self.backend = ServeBackend(engine, model, store_url, self.store, upload_dir)
        self.admin_token_hash, self.read_token_hash = admin_token_hash, read_token_hash
        self.api = api
        # Follow the status from the start, and take traffic (Serve routes to a replica once its
        # constructor returned) with the engine's status in hand, or after STATUS_WARM_UP_S
        # without it: an engine still starting must not keep the Gateway (and /readyz) down.
        await self.backend.published.warm_up(STATUS_WARM_UP_S)

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
            prometheus_url=os.environ.get("N1V1_PROMETHEUS_URL") or None,
            upload_dir=self.upload_dir,
        )
