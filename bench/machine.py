"""The machine a benchmark ran on, printed at the top of every benchmark's output."""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path


def machine_info(*packages: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """CPU model, usable cores, load at start, Python, and the versions of `packages`."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    info = {
        "cpu": model,
        "cores": f"{len(os.sched_getaffinity(0))} usable ({os.cpu_count()} online)",
        "load_avg_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
    }
    for name in packages:
        module = importlib.import_module(name)
        info[name] = getattr(module, "__version__", "?")
    info.update(extra or {})
    return info
