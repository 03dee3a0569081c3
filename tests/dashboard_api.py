"""The real HTTP API over an in-process TradingSession, served by uvicorn on a free 127.0.0.1 port.

The dashboard test needs the exact app production serves (`create_api`), but not Ray Serve: the
`LocalBackend` here answers the `Backend` protocol from a `TradingSession` running in this process,
the way the benchmark's bare-uvicorn twin does. Model routes say "unavailable"; backtests run in a
thread of this process (as the Serve app's Ray task would) when the backend is given the store's
URL, and say "unavailable" otherwise.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

from n1v1.cli.local_ray import free_port  # noqa: F401 (the tests import it from here)
from n1v1.live.session import READY_STATES, CommandError, TradingSession
from n1v1.serve.backtests import execute_backtest_job
from n1v1.store.backtests import create_backtest


class LocalBackend:
    """`n1v1.serve.api.Backend` over a session in this process (no deployment handles)."""

    def __init__(
        self, session: TradingSession, store_url: str | None = None, upload_dir: str | None = None
    ) -> None:
        self.session = session
        self.store_url = store_url
        self.upload_dir = upload_dir

    async def status(self) -> dict[str, Any]:
        return self.session.snapshot

    async def trades(self, symbol: str | None, limit: int, offset: int) -> dict[str, Any]:
        return self.session.trades_page(symbol, limit, offset)

    async def command(self, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        # the session applies commands on its loop thread between bars; wait without blocking
        return await asyncio.wrap_future(self.session.submit(kind, payload, actor))

    async def predict(self, model: str, rows: list[list[float]]) -> dict[str, Any]:
        raise CommandError("unavailable", f"model {model!r}: no model server in this process")

    async def models(self) -> dict[str, Any]:
        return {"models": []}

    async def submit_backtest(self, request: dict[str, Any], actor: str) -> str:
        if self.store_url is None:
            raise CommandError("unavailable", "no backtest runner in this process")
        job_id = "bt_" + secrets.token_hex(8)
        await asyncio.to_thread(create_backtest, self.session.store, job_id, request, actor)
        runner = threading.Thread(
            target=execute_backtest_job,
            args=(self.store_url, job_id, request, self.upload_dir),
            daemon=True,
        )
        runner.start()
        return job_id

    async def ready(self) -> dict[str, bool]:
        return {"store": True, "engine": self.session.state in READY_STATES, "model": False}


@contextmanager
def serve_app(
    app: FastAPI, start_timeout: float = 20.0, port: int = 0, graceful_s: float | None = None
) -> Iterator[str]:
    """Run `app` on uvicorn in a background thread; yields its base URL, stops it on exit.

    The listening socket is bound here and handed to uvicorn, so no other process can take the
    port between choosing and binding it. `port` 0: a free one; `graceful_s`: how long the stop
    waits for open requests (an event stream) before cutting them (None: until they end).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=graceful_s,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="dashboard-uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10.0)
        sock.close()
