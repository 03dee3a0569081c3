"""Train a model as a Ray job, or as a plain script on a local Ray.

    python jobs/train.py --name btc_mlp --data coinbase_BTC-USD_1m --timeframe 5m --epochs 20
    ray job submit --working-dir . -- "$PWD/.venv/bin/python" jobs/train.py --name btc_mlp \
        --data ... --model-root "$PWD/models" --storage-path "$PWD/ray_results"

This is `n1v1 train` (n1v1/cli/ml.py) under another name: the same flags, the same spec merging
and the same errors (`n1v1: error: ...`, exit code 2). It finds Ray as every command does
(`n1v1.cluster.ensure_ray`): the cluster of --address or RAY_ADDRESS (`ray job submit` sets it),
otherwise a private local Ray, shut down at the end. As a job it runs in Ray's temporary copy of
the working dir, so it refuses a relative model root or storage path (n1v1/locations.py). See
docs/ml/training.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import n1v1  # noqa: F401  (installed, or on PYTHONPATH via the job's working dir)
    except ModuleNotFoundError:  # `python jobs/train.py` from a checkout that is not installed:
        root = str(Path(__file__).resolve().parents[1])  # this process and a local Ray's workers
        sys.path.insert(0, root)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")]))
    from n1v1.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
