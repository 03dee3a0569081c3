"""Where the store URL comes from: a Secret's file, the environment, then the config, which may not
hold a password (n1v1/store/location.py)."""

from __future__ import annotations

import pytest

from n1v1.config import ConfigError, load_settings
from n1v1.serve.args import AppArgs
from n1v1.store.location import STORE_URL_ENV, STORE_URL_FILE_ENV, resolve_store_url

SECRET = "postgresql+psycopg://n1v1:s3cret@db:5432/n1v1"


def test_a_secret_file_beats_the_environment_which_beats_the_config(tmp_path):
    mounted = tmp_path / "url"
    mounted.write_text(SECRET + "\n")  # as `kubectl create secret` stores it, with a newline
    configured = "sqlite:///var/n1v1.db"
    assert resolve_store_url(configured, {}) == configured
    assert resolve_store_url(configured, {STORE_URL_ENV: "sqlite:///other.db"}) == (
        "sqlite:///other.db"
    )
    both = {STORE_URL_ENV: "sqlite:///other.db", STORE_URL_FILE_ENV: str(mounted)}
    assert resolve_store_url(configured, both) == SECRET


def test_a_password_in_the_config_is_refused_without_repeating_it():
    with pytest.raises(ConfigError, match=STORE_URL_FILE_ENV) as info:
        resolve_store_url(SECRET, {})
    assert "s3cret" not in str(info.value)
    with pytest.raises(ValueError, match="holds a password") as info:
        AppArgs.model_validate({"store_url": SECRET})
    assert "s3cret" not in str(info.value)


def test_bad_urls_and_unreadable_files_name_where_they_came_from(tmp_path):
    with pytest.raises(ConfigError, match=f"^{STORE_URL_ENV}: expected sqlite"):
        resolve_store_url(None, {STORE_URL_ENV: "mysql://x"})
    with pytest.raises(ConfigError, match="cannot read it"):
        resolve_store_url(None, {STORE_URL_FILE_ENV: str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match="no store URL"):
        resolve_store_url(None, {})


def test_the_app_opens_the_secrets_url_and_the_secret_names_are_not_settings(tmp_path, monkeypatch):
    mounted = tmp_path / "url"
    mounted.write_text(f"sqlite:///{tmp_path}/secret.db")
    args = AppArgs.model_validate({"store_url": "sqlite:///var/n1v1.db"})
    monkeypatch.setenv(STORE_URL_FILE_ENV, str(mounted))
    assert args.resolved_store_url() == f"sqlite:///{tmp_path}/secret.db"
    assert args.state_dir == tmp_path
    # the strict settings loader does not read them as unknown settings
    load_settings(env={STORE_URL_ENV: "x", STORE_URL_FILE_ENV: "y"})
