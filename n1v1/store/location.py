"""Where the store is: the database URL, which may hold a password, so it comes from a secret.

In a cluster the URL of the PostgreSQL store carries a password: it must come from a mounted
Secret or the environment, never from `serve_config.yaml`, a RayService manifest or a job's
arguments, which are stored and shown in plain text. So the URL is resolved in this order:

1. the file named by `N1V1_STORE_URL_FILE` (a mounted Kubernetes Secret), its text stripped;
2. `N1V1_STORE_URL`;
3. the configured URL (`store_url` in the Serve args, `--store-url`), which may not hold a
   password.

The same `serve_config.yaml` therefore runs on a laptop (its `sqlite:///var/n1v1.db`) and in the
cluster (the Secret's URL wins).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from n1v1.config import ConfigError

STORE_URL_ENV = "N1V1_STORE_URL"
STORE_URL_FILE_ENV = "N1V1_STORE_URL_FILE"
_SCHEMES = ("sqlite:///", "postgresql")


def check_store_url(url: str, *, where: str, secret: bool = False) -> str:
    """`url` if it is a SQLite or PostgreSQL URL; a ConfigError naming `where` otherwise. A URL
    from a config file (`secret=False`) may not hold a password. The message never repeats the
    URL: it may hold a password."""
    if not url.startswith(_SCHEMES):
        raise ConfigError(
            f"{where}: expected sqlite:///<path> or postgresql+psycopg://user@host/db"
        )
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"{where}: not a database URL") from None
    if parsed.password is not None and not secret:
        raise ConfigError(
            f"{where}: the URL holds a password; put it in a Secret instead: the file named by "
            f"{STORE_URL_FILE_ENV} (e.g. a mounted Kubernetes Secret) or {STORE_URL_ENV}"
        )
    return url


def resolve_store_url(configured: str | None, env: Mapping[str, str] | None = None) -> str:
    """The store URL in the order of the module docstring."""
    env = os.environ if env is None else env
    path = env.get(STORE_URL_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"{STORE_URL_FILE_ENV}={path}: cannot read it ({exc.strerror})"
            ) from None
        return check_store_url(text, where=f"the file {path} ({STORE_URL_FILE_ENV})", secret=True)
    value = env.get(STORE_URL_ENV)
    if value:
        return check_store_url(value.strip(), where=STORE_URL_ENV, secret=True)
    if configured:
        return check_store_url(configured, where="store_url")
    raise ConfigError(
        f"no store URL: set store_url (SQLite, or PostgreSQL without a password), "
        f"{STORE_URL_ENV} or {STORE_URL_FILE_ENV}"
    )
