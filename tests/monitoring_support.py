"""Helpers of the monitoring tests: tools that may be missing, and the pinned Ray version."""

from __future__ import annotations

import os
import shutil
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "kuberay" / "monitoring"


def require_tool(name: str) -> str:
    """The tool's path; fails in CI (CI_REQUIRE_SHARED=1), skips with the reason elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed (.ci/run installs what CI needs)"
        if os.environ.get("CI_REQUIRE_SHARED") == "1":
            pytest.fail(message + " but CI_REQUIRE_SHARED=1")
        pytest.skip(message)
    return path


def ray_pin() -> str:
    """The Ray version pyproject.toml pins."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("ray[")]
    return pin.split("==")[1]
