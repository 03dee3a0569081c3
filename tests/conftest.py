"""Shared fixtures. `../shared` (material beside the checkout) exists for developers and CI only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `../shared` folder; skips with a reason where it is absent (a user's clone), but fails
    where it must exist (CI sets CI_REQUIRE_SHARED=1)."""
    if SHARED.is_dir():
        return SHARED
    if os.environ.get("CI_REQUIRE_SHARED") == "1":
        pytest.fail(f"{SHARED} is missing but CI_REQUIRE_SHARED=1 (CI must not skip)")
    pytest.skip(f"{SHARED} not found: it exists only beside a developer's or CI's checkout")


@pytest.fixture(autouse=True)
def _no_user_settings_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own N1V1_* variables must not change what a test computes."""
    for key in list(os.environ):
        if key.startswith("N1V1_"):
            monkeypatch.delenv(key)


# The suite's own result is final once pytest has printed its summary. What remains is the
# interpreter's teardown of C extensions the tests loaded into this process (Ray's core worker,
# gRPC, torch, numba), which once crashed with SIGSEGV after every test had passed (CI,
# 2026-12-06: "2262 passed", then make reported a segmentation fault). Every cluster, session and
# server the tests start is stopped by their fixtures before this point, so the process ends here
# with the tests' exit status rather than run that teardown.
_EXIT_STATUS = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = config.stash.get(_EXIT_STATUS, None)
    if status is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return  # not a finished session of the main process: let pytest end as usual
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
