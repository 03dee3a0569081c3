"""The Engine deployment: exactly one replica, running one TradingSession in paper mode.

The replica is disposable. Its state lives in the store, so when it dies (or `check_health` fails
and Serve replaces it) the next replica takes the lease, rebuilds from the store and carries on.
A database outage is not the replica's fault and replacing it would not help: the session stops
trading and waits for the store (`store_unavailable`), the health check stays green, and the
replica resumes by itself (n1v1/live/session.py).
Commands and reads are async methods that never block the replica's event loop on the engine.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from n1v1.live.session import CommandError, TradingSession
from n1v1.serve.args import (
    AppArgs,
    feed_interval_s,
    live_connection,
    make_feed,
    parse_user_config,
)
from n1v1.serve.metrics import (
    MetricsJournal,
    observe_engine,
    observe_feed_interval,
    observe_predictions,
    observe_step,
    refresh_gauges,
    use_ray_metrics,
)
from n1v1.serve.predictor import ServePredictor
from n1v1.store.availability import open_store

STATUS_POLL_S = 0.01  # how often a waiting `wait_status` looks for a newly published status


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=200,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
    ray_actor_options={"num_cpus": 0},
)
class Engine:
    def __init__(self, args: dict[str, Any], model: DeploymentHandle | None = None) -> None:
        use_ray_metrics()
        self.args = AppArgs.model_validate(args)
        engine = self.args.engine
        self.store = open_store(self.args.resolved_store_url())  # may start during an outage
        live = live_connection(self.args)
        self.session = TradingSession(
            self.args.settings(),
            self.args.strategies,
            make_feed(self.args, live.exchange),
            self.store,
            broker=live.broker,
            poll_s=self.args.venue.poll_s,
            window=self.args.engine.window,
            lease_ttl=self.args.engine.lease_ttl_s,
            snapshot_every=self.args.engine.snapshot_every,
            snapshots_kept=self.args.engine.snapshots_kept,
            journal_wrapper=MetricsJournal,
            on_step=observe_step,
            # ml_signal slots ask the Model deployment's replicas (n1v1/live/predictions.py)
            predictor=None if model is None else ServePredictor(model),
            prediction_timeout_s=engine.prediction_timeout_s,
            on_prediction_failure=engine.on_prediction_failure,
            on_predictions=observe_predictions,
        )
        observe_feed_interval(feed_interval_s(self.args))
        # The published status's version: this replica's epoch (a successor starts another) and
        # how many snapshots it has seen published; only the replica's event loop touches them.
        self._status_epoch = secrets.token_hex(6)
        self._status_seen: dict[str, Any] | None = None
        self._status_count = 0
        self.session.start()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Live settings from serve_config.yaml's user_config; no restart, no lost state."""
        self.session.set_user_config(parse_user_config(user_config).model_dump())

    def check_health(self) -> None:
        session = self.session
        observe_engine(session.snapshot)  # every health check (2 s): state, lease, halts, P&L
        refresh_gauges()  # and every gauge set at the last step (metrics module docstring)
        if session.state == "failed" or not session.alive:
            raise RuntimeError(f"engine loop is down: {session.failure or session.state}")
        stalled = time.monotonic() - session.heartbeat
        if session.state == "running" and stalled > self.args.engine.stall_timeout_s:
            raise RuntimeError(f"engine loop stalled for {stalled:.0f} s")

    async def status(self) -> dict[str, Any]:
        return self.session.snapshot

    async def wait_status(
        self, after: str | None, hold_s: float
    ) -> tuple[str, dict[str, Any]] | None:
        """(version, status) as soon as the published status is not version `after`, or None
        when it stayed the same for `hold_s` seconds (which tells the caller this replica is
        alive). The Gateway's long poll: each replica holds one such call and serves the status
        it got to every reader, instead of a round trip to this replica per request."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hold_s
        while True:
            version, snapshot = self._published_status()
            if version != after:
                return version, snapshot
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(STATUS_POLL_S)

    def _published_status(self) -> tuple[str, dict[str, Any]]:
        """The session replaces its snapshot whenever it publishes (every step and command, each
        change of state), never changes one in place: a new object is a new version."""
        snapshot = self.session.snapshot
        if snapshot is not self._status_seen:
            self._status_seen = snapshot
            self._status_count += 1
        return f"{self._status_epoch}:{self._status_count}", snapshot

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]:
        """A page of the engine's trades, or {"error": {...}} while it has none to give."""
        try:
            return self.session.trades_page(symbol, limit, offset)
        except CommandError as exc:
            return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        """The result, or {"error": {...}}: a refusal travels as data, not as a Ray exception."""
        try:
            return await asyncio.wrap_future(self.session.submit(kind, payload, actor))
        except CommandError as exc:
            return {"error": {"code": exc.code, "message": exc.message, "details": exc.details}}

    def __del__(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.stop(timeout=5)
