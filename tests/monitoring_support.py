"""Helpers of the monitoring tests: tools that may be missing, and the pinned Ray version."""

from __future__ import annotations

from project import ROOT, pin, require_tool

__all__ = ["MONITORING", "ROOT", "ray_pin", "require_tool"]

MONITORING = ROOT / "kuberay" / "monitoring"


def ray_pin() -> str:
    """The Ray version pyproject.toml pins."""
    return pin("ray")
