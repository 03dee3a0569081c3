"""`n1v1.serve.app:build_app`, the application builder named by serve_config.yaml.

Serve passes the config's `args` here; they are validated into `AppArgs` (typed, strict) before any
replica starts, so a bad config fails `serve run`/`serve deploy` with the key that is wrong.

The API token: from N1V1_API_TOKEN, or from the file N1V1_API_TOKEN_FILE names (a mounted
Kubernetes Secret). With neither set, one is generated and printed once. Replicas receive only
its SHA-256 hash.
"""

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from ray.serve import Application

from n1v1.serve.api import hash_token
from n1v1.serve.args import AppArgs
from n1v1.serve.engine import Engine
from n1v1.serve.gateway import Gateway
from n1v1.serve.model import Model

TOKEN_ENV, TOKEN_FILE_ENV, READ_TOKEN_ENV = (
    "N1V1_API_TOKEN",
    "N1V1_API_TOKEN_FILE",
    "N1V1_API_READ_TOKEN",
)


def api_token_hash(env: "dict[str, str] | None" = None) -> str:
    env = dict(os.environ if env is None else env)
    token = env.get(TOKEN_ENV, "").strip()
    if not token and env.get(TOKEN_FILE_ENV):
        token = Path(env[TOKEN_FILE_ENV]).read_text().strip()
    if not token:
        token = secrets.token_urlsafe(32)
        print(
            f"N1V1 API token (generated; shown once, set {TOKEN_ENV} to choose one): {token}",
            file=sys.stderr,
            flush=True,
        )
    if len(token) < 16:
        raise ValueError(f"{TOKEN_ENV}: the API token must be at least 16 characters")
    return hash_token(token)


def build_app(args: AppArgs) -> Application:
    read_token = os.environ.get(READ_TOKEN_ENV, "").strip()
    data: dict[str, Any] = args.model_dump(mode="json")
    engine = Engine.bind(data)
    model = Model.options(
        autoscaling_config={
            "min_replicas": 1,
            "max_replicas": args.model.max_replicas,
            "target_ongoing_requests": 16,
        }
    ).bind(
        args.model_root,
        args.model.max_batch_size,
        args.model.batch_wait_timeout_s,
        args.model.refresh_s,
    )
    gateway = Gateway.options(
        autoscaling_config={
            "min_replicas": 1,
            "max_replicas": args.api.max_replicas,
            "target_ongoing_requests": 32,
        }
    )
    return gateway.bind(
        engine,
        model,
        args.store_url,
        api_token_hash(),
        hash_token(read_token) if read_token else None,
        args.api.model_dump(),
    )
