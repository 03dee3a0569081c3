"""Architecture rules that are cheap to check and expensive to lose."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import n1v1

# Only these packages may import Ray (docs: "a pure core with a thin Ray shell").
RAY_SHELL = ("n1v1.serve", "n1v1.ml.train", "n1v1.research")


def core_modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(n1v1.__path__, prefix="n1v1.")
        if not m.name.startswith(RAY_SHELL)
    ]
    assert "n1v1.engine.engine" in names and "n1v1.backtest.runner" in names
    return names


def test_the_trading_core_never_imports_ray():
    code = (
        "import importlib, sys\n"
        f"for name in {core_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "print(','.join(leaked))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"core modules pulled in Ray: {out.stdout.strip()[:200]}"
