"""GET /api/v1/status is rendered once per published snapshot (n1v1/serve/api.py, RenderedStatus)
and must still send exactly what FastAPI itself sent when it validated and encoded the status on
every request. No Ray: the API over a real session's snapshot, served by uvicorn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from dashboard_api import LocalBackend, serve_app
from fastapi import FastAPI
from test_api import ADMIN, running_session

from n1v1.serve.api import RenderedStatus, create_api, hash_token


class Published:
    """What a backend hands the API: the snapshot object of the moment (replaced, never edited)."""

    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot


def reference_app(source: Published) -> FastAPI:
    """The route as it was: a dict return value, validated and encoded by FastAPI per request."""
    app = FastAPI()

    @app.get("/api/v1/status")
    async def status() -> dict[str, Any]:
        snap = source.snapshot
        return {k: v for k, v in snap.items() if k not in ("positions", "risk", "working_orders")}

    return app


def test_the_status_body_is_byte_for_byte_what_fastapi_itself_sent(tmp_path: Path) -> None:
    with running_session(tmp_path) as live:
        real = live.session.snapshot
    assert real["state"] == "running" and real["positions"] and real["strategies"]
    # and values whose encoding could differ: non-ASCII text, a float with a long repr, tiny
    # and huge numbers, nested containers
    awkward = {"note": "Zürich → 東京", "ratio": 0.1 + 0.2, "tiny": 5e-324, "big": 2**62}
    source = Published({**real, "extra": awkward})
    api = create_api(
        LocalBackend(source),  # type: ignore[arg-type]  # only .snapshot is read for status
        live.store,
        admin_token_hash=hash_token(ADMIN),
    )
    auth = {"Authorization": f"Bearer {ADMIN}"}
    with serve_app(api) as ours, serve_app(reference_app(source)) as theirs:
        got = requests.get(f"{ours}/api/v1/status", headers=auth, timeout=10)
        want = requests.get(f"{theirs}/api/v1/status", timeout=10)
    assert got.status_code == want.status_code == 200
    assert got.content == want.content
    assert got.headers["content-type"] == want.headers["content-type"]
    assert not {"positions", "risk", "working_orders"} & set(got.json())


def test_a_snapshot_is_rendered_once_and_a_new_one_again() -> None:
    rendered = RenderedStatus()
    first = {"state": "running", "step": 7, "positions": [{"symbol": "BTC/USD"}]}
    a, b = rendered.response(first), rendered.response(first)
    assert a.body is b.body  # the same bytes object: no second encoding
    assert json.loads(a.body) == {"state": "running", "step": 7}
    second = {**first, "step": 8}  # the engine published another snapshot
    assert json.loads(rendered.response(second).body)["step"] == 8
