"""What the tests read about the project itself: its pins, and external tools they need."""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def pin(name: str) -> str:
    """The exact version pyproject pins `name` at (extras ignored)."""
    for requirement in PYPROJECT["project"]["dependencies"]:
        match = re.fullmatch(rf"{name}(\[[\w,]+\])?==(\S+)", requirement)
        if match:
            return match.group(2)
    raise AssertionError(f"pyproject.toml pins no {name}==")


def require_tool(name: str) -> str:
    """The tool's path; fails in CI (CI_REQUIRE_SHARED=1), skips with the reason elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not on PATH (.ci/run installs what CI needs)"
        if os.environ.get("CI_REQUIRE_SHARED") == "1":
            pytest.fail(message + " but CI_REQUIRE_SHARED=1")
        pytest.skip(message)
    return path
