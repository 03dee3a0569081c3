"""The API token: where it comes from, the app's own token file (created owner-only, reused), the
hashes a launcher hands its Ray instead of the token, and no token in any output."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
from pathlib import Path

import pytest

from n1v1.serve.auth import (
    READ_TOKEN_ENV,
    READ_TOKEN_SHA256_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TOKEN_SHA256_ENV,
    TokenError,
    TokenHashes,
    hash_token,
    hashed_environment,
    load_or_create,
    resolve_token,
    token_hashes,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_generated_token_is_saved_owner_only_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "api_token"  # var/ does not exist yet: it is created
    old_umask = os.umask(0)  # even with a permissive umask the file is created 0600
    try:
        first = resolve_token({}, path)
    finally:
        os.umask(old_umask)
    assert first.created and first.path == path
    assert mode(path) == 0o600
    assert path.read_text() == first.value + "\n"
    assert len(first.value) >= 32
    again = resolve_token({}, path)
    assert (again.value, again.created) == (first.value, False)
    assert first.value not in repr(again)  # never in a traceback or a log line


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    own = tmp_path / "api_token"
    own.write_text("file-token-0123456789\n")
    own.chmod(0o600)
    named = tmp_path / "secret"
    named.write_text("  mounted-secret-0123456789\n")
    assert resolve_token({TOKEN_ENV: "env-token-0123456789"}, own).value == "env-token-0123456789"
    from_file = resolve_token({TOKEN_FILE_ENV: str(named)}, own)
    assert (from_file.value, from_file.path) == ("mounted-secret-0123456789", None)
    assert resolve_token({}, own).value == "file-token-0123456789"


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    path.write_text("readable-token-0123456789\n")
    path.chmod(0o644)
    with pytest.raises(TokenError, match=r"other users can read .* \(mode 0644\); `chmod 600"):
        load_or_create(path)


def test_a_symlinked_token_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("linked-token-0123456789\n")
    target.chmod(0o600)
    link = tmp_path / "api_token"
    link.symlink_to(target)
    with pytest.raises(TokenError, match="cannot open"):
        load_or_create(link)


def test_a_short_token_names_where_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match=f"{TOKEN_ENV}: the API token must be at least 16"):
        resolve_token({TOKEN_ENV: "short"}, None)


def test_without_a_token_or_a_folder_to_keep_one_the_app_refuses_to_start() -> None:
    """A PostgreSQL store has no folder: a token generated there could only reach its user
    through a log, so none is generated; the error names both ways to configure one."""
    with pytest.raises(
        TokenError, match=f"no API token configured: set {TOKEN_ENV}, or {TOKEN_FILE_ENV}"
    ):
        resolve_token({}, None)
    with pytest.raises(TokenError, match="no API token configured"):
        token_hashes({READ_TOKEN_ENV: "a-read-only-token-0123"}, None)  # a reader is no admin


def test_the_hashes_match_the_gateways_and_the_api_compares_against() -> None:
    token = "some-admin-token-0123456789"
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    hashes = token_hashes({TOKEN_ENV: token, READ_TOKEN_ENV: "reader-token-0123456789"}, None)
    assert (hashes.admin, hashes.read) == (hash_token(token), hash_token("reader-token-0123456789"))
    assert hashes.where == f"from {TOKEN_ENV}"


def test_a_launcher_passes_ray_the_hashes_and_no_token_variable(tmp_path: Path) -> None:
    """What `n1v1 paper` gives its Ray: every token variable gone, the hashes in their place;
    the app built from that environment has the same hashes as one given the tokens."""
    secret = tmp_path / "secret"
    secret.write_text("mounted-admin-token-0123456789\n")
    user_env = {
        "PATH": "/usr/bin",
        TOKEN_FILE_ENV: str(secret),
        READ_TOKEN_ENV: "reader-token-0123456789",
    }
    admin = resolve_token(user_env, tmp_path / "api_token")
    ray_env = hashed_environment(user_env, admin)
    assert ray_env == {
        "PATH": "/usr/bin",
        TOKEN_SHA256_ENV: hash_token("mounted-admin-token-0123456789"),
        READ_TOKEN_SHA256_ENV: hash_token("reader-token-0123456789"),
    }
    assert not (tmp_path / "api_token").exists()  # the mounted token was used: none generated
    built = token_hashes(ray_env, tmp_path / "api_token")
    assert built == TokenHashes(
        admin=hash_token("mounted-admin-token-0123456789"),
        read=hash_token("reader-token-0123456789"),
        where=f"its SHA-256 from {TOKEN_SHA256_ENV}",
    )
    assert not (tmp_path / "api_token").exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({TOKEN_SHA256_ENV: "abc"}, f"{TOKEN_SHA256_ENV}: expected the token's SHA-256 as 64"),
        ({TOKEN_SHA256_ENV: "A" * 64}, f"{TOKEN_SHA256_ENV}: expected the token's SHA-256"),
        (
            {TOKEN_SHA256_ENV: "a" * 64, TOKEN_ENV: "plain-token-0123456789"},
            f"both {TOKEN_SHA256_ENV} and {TOKEN_ENV} are set: set only one",
        ),
        (
            {
                TOKEN_ENV: "plain-token-0123456789",
                READ_TOKEN_SHA256_ENV: "b" * 64,
                READ_TOKEN_ENV: "reader-token-0123456789",
            },
            f"both {READ_TOKEN_SHA256_ENV} and {READ_TOKEN_ENV} are set",
        ),
        (
            {TOKEN_ENV: "plain-token-0123456789", READ_TOKEN_ENV: "short"},
            f"{READ_TOKEN_ENV}: the API token must be at least 16",
        ),
    ],
)
def test_a_bad_hash_or_two_sources_for_one_token_are_refused_by_name(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(TokenError, match=re.escape(message)):
        token_hashes(env, None)


def test_building_the_app_writes_no_token_to_any_output_or_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What `build_app` runs in the Serve controller (its output is the controller's log): with
    no token configured it generates one into the owner-only file and says where, never what."""
    from n1v1.serve.app import api_token_hashes
    from n1v1.serve.args import AppArgs

    caplog.set_level(logging.DEBUG)
    args = AppArgs(store_url=f"sqlite:///{tmp_path / 'var' / 'n1v1.db'}")
    hashes = api_token_hashes(args, env={})
    path = tmp_path / "var" / "api_token"
    token = path.read_text().strip()
    assert mode(path) == 0o600 and hashes.admin == hash_token(token)
    again = api_token_hashes(args, env={})  # the next run reuses it
    assert again.admin == hashes.admin
    out, err = capfd.readouterr()
    assert err.splitlines() == [
        f"N1V1 API token: generated and saved to {path} (owner-only; kept for later runs)",
        f"N1V1 API token: from {path}",
    ]
    assert token not in out + err + caplog.text
    with pytest.raises(TokenError) as refused:  # PostgreSQL: no file, no token, no start
        api_token_hashes(AppArgs(store_url="postgresql+psycopg://n1v1@db/n1v1"), env={})
    assert TOKEN_ENV in str(refused.value) and TOKEN_FILE_ENV in str(refused.value)


def test_the_settings_loader_leaves_every_token_variable_alone() -> None:
    """`n1v1 paper` hands `n1v1 train` (and its Ray) the tokens' hashes: the settings loader
    must not read them as settings (it refused `api_token_sha256: unknown key`, so `make run`
    could not train its model on a fresh clone)."""
    from n1v1.config import NOT_SETTINGS, load_settings

    names = {TOKEN_ENV, TOKEN_FILE_ENV, READ_TOKEN_ENV, TOKEN_SHA256_ENV, READ_TOKEN_SHA256_ENV}
    assert names <= NOT_SETTINGS
    admin = resolve_token({TOKEN_ENV: "some-admin-token-0123456789"}, None)
    env = hashed_environment(
        {TOKEN_ENV: "some-admin-token-0123456789", READ_TOKEN_ENV: "reader-token-0123456789"}, admin
    )
    assert {TOKEN_SHA256_ENV, READ_TOKEN_SHA256_ENV} <= set(env)
    load_settings(env=env)  # no ConfigError
