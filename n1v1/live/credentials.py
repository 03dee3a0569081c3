"""Exchange API credentials: from the environment or mounted files only, never shown.

A key in a YAML file, a `serve_config.yaml` or a job's arguments is stored and displayed in plain
text (Ray's dashboard shows a deployment's config), so the settings model has no field for one.
Each credential is read from `N1V1_EXCHANGE_<NAME>` or from the file that
`N1V1_EXCHANGE_<NAME>_FILE` names (a mounted Kubernetes Secret), its text stripped; setting both
is refused, as an ambiguity about which key trades is. Messages name the variables, never a
value, and the returned mapping hides its values from `repr`, so no traceback or log line carries
them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from n1v1.config import ConfigError

# ccxt's field -> the variable it is read from; `password` is the passphrase some exchanges
# (OKX, Coinbase Exchange, KuCoin) ask for besides key and secret.
CREDENTIAL_ENV = {
    "apiKey": "N1V1_EXCHANGE_API_KEY",
    "secret": "N1V1_EXCHANGE_API_SECRET",
    "password": "N1V1_EXCHANGE_PASSWORD",
}
CREDENTIAL_VARIABLES = frozenset(
    name for var in CREDENTIAL_ENV.values() for name in (var, f"{var}_FILE")
)
REQUIRED = ("apiKey", "secret")


class Credentials(dict[str, str]):
    """ccxt's credential fields; `repr` and `str` show which are set, never their values."""

    def __repr__(self) -> str:
        return f"Credentials({sorted(self)})"

    __str__ = __repr__


def exchange_credentials(env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials a live venue signs with (ConfigError naming the variable when missing)."""
    env = os.environ if env is None else env
    out = Credentials()
    for field, var in CREDENTIAL_ENV.items():
        value = _read(env, var)
        if value:
            out[field] = value
    missing = [CREDENTIAL_ENV[f] for f in REQUIRED if f not in out]
    if missing:
        raise ConfigError(
            "exchange.venue: live trading needs API credentials: set "
            + " and ".join(f"{v} (or {v}_FILE)" for v in missing)
            + " in the environment; they are never read from a config file"
        )
    return out


def _read(env: Mapping[str, str], var: str) -> str:
    direct, file_var = env.get(var, "").strip(), f"{var}_FILE"
    path = env.get(file_var, "").strip()
    if direct and path:
        raise ConfigError(f"{var} and {file_var} are both set: keep one")
    if not path:
        return direct
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{file_var}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"{file_var}: {path} is empty")
    return value
