"""A retried training job resumes from its last checkpoint: `jobs/train.py` as a process, killed
with SIGKILL after its first checkpoints (as a pod eviction kills a RayJob's pod: the driver and
the Ray it started, with no chance to clean up), then started again with the same arguments, as
a RayJob's `backoffLimit` retry does. The storage path is the same, and the run name is too: it
defaults to `--name`, so the retry finds the checkpoints.

The retry must continue at the epoch after the last checkpoint (not at epoch 1) and end with the
weights, per-epoch losses and registered model of an uninterrupted run of the same command
(training is deterministic: docs/ml/training.md, "Determinism"). tests/test_ml_train.py checks
the same in one process with an injected failure; this is the job entry point as a process.

Three processes, each starting a private local Ray (no RAY_ADDRESS): the interrupted run, the
retry, and the uninterrupted reference (its own storage and model root).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from n1v1.cli.local_ray import processes_in_session
from n1v1.data import generate_bars
from n1v1.ml.models import read_state_dict
from n1v1.ml.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "jobs" / "train.py"
EPOCHS = 8

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    ray_tmp = Path(tempfile.mkdtemp(prefix="n1v1-jr-", dir="/tmp"))  # short: Ray's socket paths
    environment = {
        k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("N1V1_")
    }
    environment.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), environment.get("PYTHONPATH")])),
        RAY_TMPDIR=str(ray_tmp),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        # Ray Train's controller collects each epoch's report every 0.5 s instead of every 2 s
        # (timing only: docs/ml/training.md). Still slow enough that the job, killed as soon as
        # its second epoch is printed, has six more polls (3 s) to go: it is killed mid-run.
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.5",
    )
    try:
        yield environment
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def train_command(data: Path, storage: Path, models: Path, result: Path) -> list[str]:
    """The job's command line; the same arguments for the interrupted run and its retry."""
    return [
        sys.executable,
        str(JOB),
        "--name",
        "syn_mlp",
        "--data",
        str(data),
        "--epochs",
        str(EPOCHS),
        "--patience",
        str(EPOCHS),  # no early stop: every epoch is trained, so there is something to resume
        "--hidden",
        "16",
        "--horizon",
        "5",
        "--fee",
        "0",
        "--margin",
        "0",
        "--batch-size",
        "256",
        "--seed",
        "3",
        "--storage-path",
        str(storage),
        "--model-root",
        str(models),
        "--json",
        str(result),
    ]


def kill_job(process: subprocess.Popen[str]) -> list[int]:
    """SIGKILL the job and every process of its session (its private Ray), like an eviction."""
    sid = process.pid
    killed = []
    deadline = time.monotonic() + 30
    while True:
        alive = [pid for pid in [sid, *processes_in_session(sid)] if _alive(pid)]
        if not alive:
            return killed
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of the killed job still alive: {alive}")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def epochs_printed(output: str) -> list[int]:
    return [int(m) for m in re.findall(rf"^epoch +(\d+)/{EPOCHS} ", output, flags=re.M)]


def checkpoint_epochs(run_dir: Path) -> set[int]:
    return {int(p.name.rsplit("_", 1)[1]) for p in run_dir.glob("checkpoint_epoch_*")}


def test_a_job_killed_mid_training_resumes_on_retry_and_ends_like_an_uninterrupted_run(
    tmp_path: Path, env: dict[str, str]
) -> None:
    data = tmp_path / "syn_1m.csv"
    generate_bars(3000, seed=1).to_csv(data)
    storage, models = tmp_path / "ray_results", tmp_path / "models"
    run_dir = storage / "syn_mlp"  # the run name defaults to --name: stable across retries
    command = train_command(data, storage, models, tmp_path / "retry.json")

    # 3. (started first, it runs beside 1 and 2) the uninterrupted reference: the same command
    # with its own storage and registry
    ref_storage, ref_models = tmp_path / "ref_results", tmp_path / "ref_models"
    reference = subprocess.Popen(
        train_command(data, ref_storage, ref_models, tmp_path / "reference.json"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a failure below can stop it and its private Ray
    )
    try:
        check_resume_against(reference, tmp_path, data, command, storage, models, run_dir, env)
    finally:
        if reference.poll() is None:
            kill_job(reference)


def check_resume_against(
    reference: subprocess.Popen[str],
    tmp_path: Path,
    data: Path,
    command: list[str],
    storage: Path,
    models: Path,
    run_dir: Path,
    env: dict[str, str],
) -> None:
    # 1. the job, killed with SIGKILL once two epochs are checkpointed
    log = tmp_path / "killed.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            command,
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its private Ray's processes share the session
        )
    try:
        deadline = time.monotonic() + 240
        while len(checkpoint_epochs(run_dir)) < 2 or len(epochs_printed(log.read_text())) < 2:
            assert job.poll() is None, f"precondition: the job is still training\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no two checkpoints in time\n{log.read_text()}"
            time.sleep(0.05)
    finally:
        killed = kill_job(job)
    assert job.returncode == -signal.SIGKILL and job.pid in killed
    printed = epochs_printed(log.read_text())
    on_disk = checkpoint_epochs(run_dir)
    assert max(printed) < EPOCHS, f"precondition: killed mid-run, not after epoch {max(printed)}"
    assert not (models / "syn_mlp").exists()  # it never got as far as registering

    # 2. the retry: the same command line
    retry = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]
    resumed = json.loads((tmp_path / "retry.json").read_text())
    first = resumed["resumed_from_epoch"]
    # it continued after the last checkpoint Ray had recorded (one of those on disk at the kill,
    # at least the second), not at epoch 1
    assert first is not None and first - 1 in on_disk and first - 1 >= 2, (first, on_disk)
    assert resumed["epochs_trained"] == list(range(first, EPOCHS + 1))
    assert epochs_printed(retry.stdout) == list(range(first, EPOCHS + 1))
    assert f"training syn_mlp (run syn_mlp in {storage})" in retry.stdout

    # 3. the reference's outcome
    reference_out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, reference_out[-3000:]
    expected = json.loads((tmp_path / "reference.json").read_text())
    assert expected["resumed_from_epoch"] is None
    assert epochs_printed(reference_out) == list(range(1, EPOCHS + 1))

    # the same epochs with the same losses, the same final and best weights, the same model
    def losses(result: dict) -> list[tuple[int, float, float]]:
        return [(h["epoch"], h["train_loss"], h["val_loss"]) for h in result["history"]]

    assert losses(resumed) == losses(expected) and len(losses(expected)) == EPOCHS
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["threshold"] == expected["threshold"]
    for key in ("latest_checkpoint_path", "checkpoint_path"):
        got = read_state_dict(Path(resumed[key]) / "model.pt")
        want = read_state_dict(Path(expected[key]) / "model.pt")
        assert got.keys() == want.keys()
        for name in got:
            assert torch.equal(got[name], want[name]), (key, name)
    registered = ModelRegistry(models).files("syn_mlp", resumed["version"]) / "model.pt"
    ref_models = tmp_path / "ref_models"
    ref_registered = ModelRegistry(ref_models).files("syn_mlp", expected["version"]) / "model.pt"
    assert registered.read_bytes() == ref_registered.read_bytes()
