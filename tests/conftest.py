"""Shared fixtures. `../shared` (material beside the checkout) exists for developers and CI only."""

from __future__ import annotations

import os
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
