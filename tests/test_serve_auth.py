"""The API token: where it comes from, and the app's own token file (created owner-only, reused)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from n1v1.serve.auth import TOKEN_ENV, TOKEN_FILE_ENV, TokenError, load_or_create, resolve_token


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


def test_without_a_file_a_token_is_for_this_run_only() -> None:
    first, second = resolve_token({}, None), resolve_token({}, None)
    assert first.created and first.path is None and first.value != second.value
