"""`n1v1.serve.app:build_app`, the application builder named by serve_config.yaml.

Serve passes the config's `args` here; they are validated into `AppArgs` (typed, strict) before any
replica starts, so a bad config fails `serve run`/`serve deploy` with the key that is wrong.

The API token (n1v1/serve/auth.py): from N1V1_API_TOKEN, or the file N1V1_API_TOKEN_FILE names
(a mounted Kubernetes Secret), or only its hash in N1V1_API_TOKEN_SHA256 (what `n1v1 paper`
passes), else the app's own `api_token` file beside its SQLite store, generated once (mode 0600)
and reused on later runs; with none of these (a PostgreSQL store) the build fails naming the
variables. Replicas receive only SHA-256 hashes; the token itself is never printed here (this
output goes to Ray's log files), only where it is.
"""

import os
import sys
from typing import Any

from ray.serve import Application

from n1v1.serve.args import AppArgs
from n1v1.serve.auth import (
    READ_TOKEN_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TOKEN_FILE_NAME,
    TokenHashes,
    token_hashes,
)
from n1v1.serve.engine import Engine
from n1v1.serve.gateway import Gateway
from n1v1.serve.model import Model

__all__ = ["READ_TOKEN_ENV", "TOKEN_ENV", "TOKEN_FILE_ENV", "api_token_hashes", "build_app"]


def api_token_hashes(args: AppArgs, env: "dict[str, str] | None" = None) -> TokenHashes:
    """The tokens' hashes, saying on stderr where the admin token is (never what it is)."""
    state_dir = args.state_dir
    own_file = None if state_dir is None else state_dir.resolve() / TOKEN_FILE_NAME
    hashes = token_hashes(dict(os.environ if env is None else env), own_file)
    print(f"N1V1 API token: {hashes.where}", file=sys.stderr, flush=True)
    return hashes


def build_app(args: AppArgs) -> Application:
    hashes = api_token_hashes(args)
    data: dict[str, Any] = args.model_dump(mode="json")
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
    engine = Engine.bind(data, model)  # its ml_signal slots ask the Model replicas
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
        args.resolved_store_url(),
        hashes.admin,
        hashes.read,
        args.api.model_dump(),
        args.upload_dir,
    )
