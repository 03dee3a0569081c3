"""A training job submitted to a Ray cluster puts its model where the checkout and the app see it.

As a user does it (README, "Machine learning"): a Ray head of its own (`ray start --head`, here
on free ports, stopped by its PIDs), then from the checkout

    ray job submit --address http://127.0.0.1:<dashboard> --working-dir . -- \\
        "$PWD/.venv/bin/python" jobs/train.py ... --model-root "$PWD/models" \\
        --storage-path "$PWD/ray_results"

Ray runs the job inside its own temporary copy of the checkout; the model must land in the
checkout's `models/` nonetheless, where `n1v1 models list` run in the checkout finds it and
`n1v1 models promote` promotes it. The same command without the two locations is refused,
naming the setting, and writes nothing into the copy.

The fixtures build on each other (`cluster` -> `trained` -> `promoted`) and are module-scoped; the
last test deploys the Serve app on the same cluster, its model root the checkout's registry, and
watches its ml_signal slot trade the promoted version through the Model replicas.

The checkout is a copy of the project's `n1v1/`, `jobs/` and `.gitignore`: the job imports N1V1
from its working dir only (the head's PYTHONPATH is cleared), and `.gitignore` keeps `models/`
and `ray_results/` out of the upload as in a real clone. The data are bars with momentum, on
which the tiny model passes the promotion gate (tests/test_retrain.py trains the same).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import momentum_bars

from n1v1.cli.local_ray import HeadPorts, LocalRayHead, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "mom"
DATA = "data/momentum_1m.csv"  # in the checkout, so uploaded with it; read in Ray's copy
RECIPE = (  # tests/test_retrain.py's: on momentum_bars() the tiny model passes the gate
    f"--data {DATA} --epochs 4 --hidden 16 --horizon 5 --fee 0.001 --margin 0 "
    "--batch-size 256 --seed 3"
).split()


@dataclass(frozen=True)
class JobCluster:
    head: LocalRayHead
    checkout: Path  # where the user runs `ray job submit` and `n1v1`
    env: dict[str, str]  # the user's shell: no RAY_ADDRESS, no N1V1_*
    logs: Path  # what `ray job submit` printed, one file per job

    @property
    def address(self) -> str:
        """The GCS address (`ray.init(address=...)`, `serve` through the dashboard below)."""
        return self.head.address

    @property
    def dashboard(self) -> str:
        """The job server (`ray job submit --address`, `serve deploy --address`)."""
        return f"http://127.0.0.1:{self.head.ports.dashboard}"

    def submit(self, **jobs: list[str]) -> dict[str, tuple[int, str]]:
        """`ray job submit --working-dir .` of each `python jobs/...` command line, from the
        checkout, all at once (as several users may); the venv's python runs each job (a head's
        PATH need not have it). Returns each job's exit code and output, by the given key."""
        command = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard]
        command += ["--working-dir", ".", "--", sys.executable]
        running = {}
        for key, job in jobs.items():
            with (self.logs / f"{key}.log").open("w") as log:
                running[key] = subprocess.Popen(
                    [*command, *job],
                    cwd=self.checkout,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        codes = {key: process.wait(timeout=300) for key, process in running.items()}
        return {key: (codes[key], (self.logs / f"{key}.log").read_text()) for key in jobs}

    def n1v1(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`n1v1 ...` run in the checkout, with the settings' defaults (ml.model_root: models)."""
        return subprocess.run(
            [sys.executable, "-m", "n1v1", *args],
            cwd=self.checkout,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def working_dir_copies(self) -> list[Path]:
        """Ray's copies of the submitted working dir, on this (the only) node."""
        found = self.head.temp_dir.glob("session_*/runtime_resources/working_dir_files/*")
        return sorted({path.resolve() for path in found if path.is_dir()})  # session_latest too


@dataclass(frozen=True)
class TrainedModel:
    cluster: JobCluster
    model_root: Path
    storage_path: Path
    data: Path  # the bars it was trained on (a serving test can replay them)
    name: str
    version: str
    job_output: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobCluster]:
    checkout = tmp_path_factory.mktemp("checkout")
    for folder in ("n1v1", "jobs"):
        shutil.copytree(
            ROOT / folder, checkout / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / ".gitignore", checkout / ".gitignore")
    (checkout / DATA).parent.mkdir()
    momentum_bars().to_csv(checkout / DATA)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAY_ADDRESS", "PYTHONPATH") and not k.startswith("N1V1_")
    }
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.2"  # collect each epoch's report every 0.2 s
    ports = HeadPorts(free_port(), free_port(), free_port(), free_port(), free_port())
    head = LocalRayHead(str(BIN / "ray"), ports, 2, env)
    try:
        head.start()
        yield JobCluster(head, checkout, env, tmp_path_factory.mktemp("job-logs"))
    finally:
        head.stop()
        head.remove_temp_dir()


@pytest.fixture(scope="module")
def submitted(cluster: JobCluster) -> dict[str, tuple[int, str]]:
    """Two jobs at once (so the module stays under a minute): the README's training command
    with the checkout's absolute locations, and the same without them."""
    locations = ["--model-root", str(cluster.checkout / "models")]
    locations += ["--storage-path", str(cluster.checkout / "ray_results")]
    return cluster.submit(
        train=["jobs/train.py", "--name", NAME, *RECIPE, "--no-promote", *locations],
        refused=["jobs/train.py", "--name", "lost", *RECIPE],
    )


@pytest.fixture(scope="module")
def trained(cluster: JobCluster, submitted: dict[str, tuple[int, str]]) -> TrainedModel:
    code, output = submitted["train"]
    assert code == 0, output[-4000:]
    registered = re.search(rf"^registered {NAME}/(v\d{{4}})$", output, flags=re.M)
    assert registered, output[-4000:]
    models, runs = cluster.checkout / "models", cluster.checkout / "ray_results"
    data = cluster.checkout / DATA
    return TrainedModel(cluster, models, runs, data, NAME, registered.group(1), output)


@pytest.fixture(scope="module")
def promoted(trained: TrainedModel) -> TrainedModel:
    """`n1v1 models promote` in the checkout: the model passes the gate, no --force needed."""
    result = trained.cluster.n1v1("models", "promote", trained.name, trained.version)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"promoted {trained.name}/{trained.version} (val_auc ")
    assert "forced" not in result.stdout
    return trained


def listed_row(cluster: JobCluster) -> list[str]:
    """The model's row of `n1v1 models list` in the checkout (a promoted version that passed
    the gate shows as itself; forced, it would say so)."""
    listed = cluster.n1v1("models", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if line.startswith(f"{NAME} ")]
    assert len(rows) == 1, listed.stdout
    return rows[0]


def test_the_jobs_model_is_in_the_checkouts_registry_and_its_checkpoints_beside_it(
    trained: TrainedModel,
) -> None:
    cluster = trained.cluster
    (copy,) = cluster.working_dir_copies()  # the job ran in Ray's copy of the checkout ...
    assert (copy / "jobs" / "train.py").is_file()
    assert f"training {NAME} (run {NAME} in {trained.storage_path}):" in trained.job_output
    # ... and `models list` in the checkout sees it: versions, promoted (none yet), latest
    assert listed_row(cluster) == [NAME, "1", "-", trained.version]
    assert (trained.model_root / NAME / trained.version / "card.json").is_file()
    assert sorted(p.name for p in (trained.storage_path / NAME).glob("checkpoint_epoch_*"))
    assert not (copy / "models").exists() and not (copy / "ray_results").exists()


def test_the_model_is_promoted_from_the_checkout(promoted: TrainedModel) -> None:
    assert listed_row(promoted.cluster) == [NAME, "1", promoted.version, promoted.version]


def test_a_job_that_would_write_into_its_working_dir_copy_is_refused(
    cluster: JobCluster, submitted: dict[str, tuple[int, str]]
) -> None:
    """The README's command without the locations: the defaults (`models`, `ray_results`) would
    resolve inside Ray's copy; the job fails naming the settings and how to give them."""
    code, output = submitted["refused"]
    assert code != 0, output[-4000:]
    assert "failed" in output and "exit code 2" in output
    refusal = "n1v1: error: ml.model_root is 'models', a relative path, and this is a Ray job"
    assert refusal in output
    assert '--model-root "$PWD/models"' in output and "N1V1_ML__MODEL_ROOT" in output
    assert "n1v1: error: ml.storage_path is 'ray_results'" in output
    copies = cluster.working_dir_copies()
    assert copies, "the job ran in a copy of the working dir"
    for copy in copies:
        assert not {"models", "ray_results"} & {p.name for p in copy.iterdir()}, copy
    assert not (cluster.checkout / "models" / "lost").exists()


def test_the_running_serve_app_trades_with_the_promoted_model(
    promoted: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last step of the loop: the Serve app, deployed on the same cluster with the checkout's
    registry as its model root, trades the model the job trained and the checkout promoted (its
    ml_signal slot names no version: it follows the promoted one through the Model replicas)."""
    import ray
    from ray import serve

    from n1v1.serve.app import build_app
    from n1v1.serve.args import AppArgs
    from n1v1.store import StoreReader, create_store

    cluster = promoted.cluster
    args = AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp_path / 'app.db'}",
            "model_root": str(promoted.model_root),
            "feed": {
                "kind": "replay",
                "datasets": ["coinbase_BTC-USD_1m"],
                "start": "2018-04-04 00:00",
                "end": "2018-04-04 08:00",
                "bars_per_second": 100,
            },
            "strategies": [{"name": "ml_signal", "id": "ml", "params": {"model": NAME}}],
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1},
        }
    )
    monkeypatch.setenv("N1V1_API_TOKEN", "job-registry-" + "x" * 24)
    # the app's code comes from the checkout, as the jobs' did (the head has no PYTHONPATH)
    ray.init(address=cluster.address, runtime_env={"working_dir": str(cluster.checkout)})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        serve.run(build_app(args), name="jobs_app", route_prefix="/jobs_app")
        engine = serve.get_deployment_handle("Engine", app_name="jobs_app")
        deadline = time.monotonic() + 120
        while True:
            status = engine.status.remote().result(timeout_s=30)
            if status.get("feed_exhausted") or status.get("state") == "failed":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
        assert status["state"] == "replay_finished", status.get("failure")
        (ml,) = status["strategies"]
        assert ml["model"]["model"] == NAME and ml["model"]["version"] == promoted.version
    finally:
        # the app stays on the cluster, which the module's `cluster` stops (no drain: the head
        # runs with RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0); serve.shutdown() would first drain
        # every replica gracefully, seconds that check nothing here
        ray.shutdown()
    reader = StoreReader(create_store(args.store_url))
    answers = [r for rows in reader.predictions().values() for r in rows]
    ok = [r for r in answers if r["status"] == "ok"]
    assert ok and {r["version"] for r in ok} == {promoted.version}
    assert len(ok) > len(answers) // 2, {r["status"] for r in answers}
    assert any(s.strategy == "ml" for s in reader.signals()), "the slot never traded"
    assert reader.fills(), "no fill: the app did not trade with the model"
