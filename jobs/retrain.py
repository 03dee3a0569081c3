"""Scheduled retraining: the entry point of the RayCronJob (or any scheduler).

    python jobs/retrain.py --name btc_mlp --data /mnt/n1v1/data/btc_1m.parquet \
        --schedule "0 2 * * *" --model-root /mnt/n1v1/models --storage-path /mnt/n1v1/ray_results

This is `n1v1 retrain` (n1v1/cli/retrain.py): every option of `n1v1 train`, plus the schedule.
It trains once per tick of the schedule: a run for a tick that is done, or while another run holds
the lock in the store (the file named by N1V1_STORE_URL_FILE, N1V1_STORE_URL, or --store-url),
exits 0 without training. The new version is promoted only through the promotion gate. Ray is
found as every command finds it (`RAY_ADDRESS`, set by the RayJob). As a job, the model root,
the storage path and a SQLite store must be absolute (n1v1/locations.py). See
docs/ml/training.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    try:
        import n1v1  # noqa: F401  (installed, or on PYTHONPATH via the job's working dir)
    except ModuleNotFoundError:  # `python jobs/retrain.py` from a checkout that is not installed:
        root = str(Path(__file__).resolve().parents[1])  # this process and a local Ray's workers
        sys.path.insert(0, root)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.getenv("PYTHONPATH")]))
    from n1v1.cli import main

    sys.exit(main(["retrain", *sys.argv[1:]]))
