"""Walk-forward optimisation as a Ray job, or as a plain script on a local Ray.

    python jobs/walkforward.py --data coinbase_BTC-USD_1m --timeframe 1h --strategy sma_cross \
        --grid fast=5:30:5 --grid slow=40:200:20 --train-bars 2000 --test-bars 500 \
        --report out/wf.html --json out/wf.json
    ray job submit --working-dir . -- "$PWD/.venv/bin/python" jobs/walkforward.py --data ... \
        --report "$PWD/out/wf.html" --json "$PWD/out/wf.json"

This is `n1v1 walkforward` (n1v1/cli/walkforward.py) under another name: the same flags and the
same errors (`n1v1: error: ...`, exit code 2). It connects to the cluster when RAY_ADDRESS is set
(`ray job submit` sets it) or --address is given, and otherwise starts a local Ray and shuts it
down at the end. Output paths are on the machine that runs the driver; as a job they must be
absolute (n1v1/locations.py). See docs/research.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import n1v1  # noqa: F401  (installed, or on PYTHONPATH via the job's working dir)
    except ModuleNotFoundError:  # `python jobs/walkforward.py` from a checkout not installed:
        root = str(Path(__file__).resolve().parents[1])  # this process and a local Ray's workers
        sys.path.insert(0, root)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")]))
    from n1v1.cli import main

    sys.exit(main(["walkforward", *sys.argv[1:]]))
