"""Run a parameter sweep as a Ray job, or as a plain script on a local Ray.

    python jobs/sweep.py --data coinbase_BTC-USD_1m --strategy sma_cross --grid fast=5:50:5
    ray job submit --working-dir . -- "$PWD/.venv/bin/python" jobs/sweep.py --data ... \
        --out "$PWD/out/sma"

This is `n1v1 sweep` (n1v1/cli/sweep.py) under another name: the same flags, the same output and
the same errors (`n1v1: error: ...`, exit code 2). It connects to the cluster when RAY_ADDRESS is
set (`ray job submit` sets it) or --address is given, and otherwise starts a local Ray and shuts
it down at the end. Resubmitting the same job with the same --out resumes the sweep (the
directory must be on storage the driver can reach again: as a job, a relative --out is refused,
n1v1/locations.py). See docs/research.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import n1v1  # noqa: F401  (installed, or on PYTHONPATH via the job's working dir)
    except ModuleNotFoundError:  # `python jobs/sweep.py` from a checkout that is not installed:
        root = str(Path(__file__).resolve().parents[1])  # this process and a local Ray's workers
        sys.path.insert(0, root)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")]))
    from n1v1.cli import main

    sys.exit(main(["sweep", *sys.argv[1:]]))
