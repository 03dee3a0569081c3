"""The README's machine-learning sequence, run as written, beside another Ray on the machine.

Issue 9: `n1v1 train` crashed with a raw traceback ("num_cpus ... must not be provided") when a
local cluster was running and RAY_ADDRESS was unset, and `n1v1 evaluate --model btc_mlp` after
`n1v1 train` failed with "no promoted version". So this module starts a real `ray start --head`
of its own (free ports, a private RAY_TMPDIR so that its address file is seen by our commands
only and by no other Ray user of the machine), runs the README's first block line by line as
subprocesses without RAY_ADDRESS, and stops that head by its process id at the end.

It also checks what training prints: our own lines only (no Ray Train report dumps), and every
return with its unit. The outcome of the gate is not hard-coded: the lines printed after it must
agree with it (`models list`, `evaluate`'s version, the backtest's note).

Costs: one Ray Train run (Ray start-up dominates), a 4-fold walk-forward trained in-process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dashboard_api import free_port

ROOT = Path(__file__).resolve().parent.parent
HEAD_START_TIMEOUT = 120
COMMAND_TIMEOUT = 600

pytestmark = pytest.mark.slow


def readme_first_hour() -> list[list[str]]:
    """The commands of the first code block of README.md's "Machine learning" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Machine learning\n") :]
    block = section[section.index("```sh\n") + 6 :]
    block = block[: block.index("```")]
    joined = block.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def test_the_readme_block_is_the_sequence_this_module_runs():
    commands = readme_first_hour()
    assert [c[:2] for c in commands] == [
        ["n1v1", "train"],
        ["n1v1", "models"],
        ["n1v1", "models"],
        ["n1v1", "evaluate"],
        ["n1v1", "backtest"],
    ]


@pytest.fixture(scope="module")
def other_ray() -> Iterator[tuple[dict[str, str], subprocess.Popen[bytes]]]:
    """A `ray start --head --block` of our own, as a user's other cluster: yields the environment
    our commands run in (its RAY_TMPDIR, no RAY_ADDRESS) and the head's process; stopped by its
    process id."""
    # short: Ray's unix socket paths under the temp dir must stay below 108 characters
    tmp = Path(tempfile.mkdtemp(prefix="n1v1-fh-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        RAY_TMPDIR=str(tmp),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        # Ray Train's controller collects each epoch's report every 0.2 s instead of every 2 s,
        # which would bound the 20 epochs of the README's tiny run (timing only:
        # docs/ml/training.md); what is trained and printed is the same
        RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2",
    )
    ports = {
        "--port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        *(f"{flag}={value}" for flag, value in ports.items()),
    ]
    log = tmp / "head.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + HEAD_START_TIMEOUT
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up:\n{log.read_text(errors='replace')}")
            time.sleep(0.5)
        address_file = tmp / "ray" / "ray_current_cluster"
        assert address_file.read_text().strip().endswith(f":{ports['--port']}")
        yield env, head
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)  # the group it led: ours alone
        head.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert argv[0] == "n1v1"
    return subprocess.run(
        [sys.executable, "-m", "n1v1", *argv[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


# Every line `n1v1 train` may print on stdout, in order of appearance.
TRAIN_LINES = [
    r"training btc_mlp \(run btc_mlp in .+\): [\d,]+ rows: [\d,]+ train, purge 15, [\d,]+ val; "
    r"15 features, 2 classes, 1 worker\(s\)",
    r"epoch +\d+/20  train_loss \d\.\d{5}  val_loss \d\.\d{5}  val_auc (\d\.\d{4}|n/a)  "
    r"best epoch \d+  [\d,]+ samples/s(  \(early stop\))?",
    r"best epoch \d+ of \d+: val_loss \d\.\d{5}, val_auc \d\.\d{4}; threshold \d\.\d{4} \(.+\)",
    r"validation backtest \d{4}-\d\d-\d\d \d\d:\d\d \.\. \d{4}-\d\d-\d\d \d\d:\d\d \([\d,]+ bars, "
    r"\d+ sessions?, 0\.10% fee per fill\): ml_signal [+-]\d+\.\d\d% net \(\d+ trades?\), "
    r"buy-and-hold [+-]\d+\.\d\d% net",
    r"registered btc_mlp/v0001",
    r"best checkpoint: .+/btc_mlp/checkpoint_epoch_\d{4}",
    r"gate chance: (PASS|FAIL): .+",
    r"gate buy_and_hold: (PASS|FAIL): ml_signal [+-]\d+\.\d\d% (beats|does not beat) "
    r"buy-and-hold [+-]\d+\.\d\d% and cash \(0 %\) on the validation bars, net of 0\.10% fees "
    r"per fill",
    r"(promoted btc_mlp/v0001: it passed the gate|NOT PROMOTED: it fails the baseline gate\. "
    r"btc_mlp has no promoted version\.)",
    r"  To serve v0001 anyway: n1v1 models promote btc_mlp v0001 --force .+",
]


def test_the_readme_sequence_runs_as_written_beside_another_local_ray(other_ray, tmp_path):
    head_env, head = other_ray
    env = {
        **head_env,
        "N1V1_ML__MODEL_ROOT": str(tmp_path / "models"),
        "N1V1_ML__STORAGE_PATH": str(tmp_path / "ray_results"),
    }
    train, listing, show, evaluate, backtest = readme_first_hour()

    # 1. train, with the other head running and RAY_ADDRESS unset: a private local Ray, no crash
    done = run(train, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in ("Traceback", "must not be provided", "Reporting training result", "Checkpoint "):
        assert noise not in done.stdout + done.stderr, noise
    assert "RayTrainWorker" not in done.stdout + done.stderr  # no worker log lines at INFO
    # Ray Train's placement-group cleaner of our private Ray asks the State API of... its own
    # cluster (RAY_ADDRESS inherited), not of the other head whose address file it would find
    assert "PlacementGroupCleaner" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for line in lines:
        assert any(re.fullmatch(p, line) for p in TRAIN_LINES), f"unexpected line: {line!r}"
    assert sum(line.startswith("epoch ") for line in lines) >= 1
    promoted = "promoted btc_mlp/v0001: it passed the gate" in lines
    gate_failed = any(line.startswith("gate ") and ": FAIL: " in line for line in lines)
    assert promoted != gate_failed
    assert head.poll() is None  # the other Ray is untouched (still running)

    # 2. models list: the version, and the promotion the gate decided
    done = run(listing, tmp_path, env)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.startswith("btc_mlp"))
    assert row.split() == ["btc_mlp", "1", "v0001" if promoted else "-", "v0001"]

    # 3. models show: the gate's verdict, check by check
    done = run(show, tmp_path, env)
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    expected_status = "passed" if promoted else "failed: "
    assert first.startswith("btc_mlp/v0001") and f": gate {expected_status}" in first

    # 4. evaluate: the promoted version's recipe, else the latest's, and it says which
    done = run(evaluate, tmp_path, env)
    assert done.returncode == 0, done.stderr[-3000:]
    said = "btc_mlp has no promoted version: evaluating the recipe of its latest version"
    assert (said in done.stdout) is not promoted
    assert "Walk-forward evaluation of btc_mlp v0001" in done.stdout
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert len(result["folds"]) == 4 and result["config"]["model"] == "btc_mlp"
    assert (tmp_path / "out" / "eval.html").stat().st_size > 0

    # 5. backtest after the training window: runs; an unvalidated model is noted as such
    done = run(backtest, tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "ml_signal(model=btc_mlp, version=v0001" in done.stdout
    noted = "note: UNVALIDATED MODEL: btc_mlp/v0001 did not pass the promotion gate" in done.stdout
    assert noted is gate_failed
    assert head.poll() is None


def test_an_address_nothing_listens_on_is_an_error_within_seconds(tmp_path):
    """Not Ray's minutes of retries ending in a bare SystemExit: exit 2 and a message."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = ["n1v1", "train", "--name", "m", "--data", "coinbase_BTC-USD_1m", "--end", "2018-04-03"]

    def timed(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        return run(argv, tmp_path, env), time.monotonic() - started

    with ThreadPoolExecutor(max_workers=2) as pool:  # two independent commands, side by side
        by_flag = pool.submit(timed, [*argv, "--address", f"127.0.0.1:{port}"], env)
        by_env = pool.submit(timed, argv, {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"})
        (done, seconds), (done_env, _) = by_flag.result(), by_env.result()
    assert done.returncode == 2
    assert done.stderr.startswith(f"n1v1: error: cannot reach Ray at --address 127.0.0.1:{port}")
    assert "Traceback" not in done.stderr
    assert seconds < 60  # the TCP check gives up after 5 s
    assert done_env.returncode == 2
    assert f"cannot reach Ray at RAY_ADDRESS=127.0.0.1:{port}" in done_env.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--grid", "fast=5:10:5", "--out", "out/sweep"],
        ["walkforward", "--grid", "fast=5:10:5", "--train-bars", "365", "--test-bars", "90"],
    ],
)
def test_sweep_and_walkforward_find_ray_the_same_way(tmp_path, argv):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    common = ["--data", "coinbase_BTC-USD_1d", "--strategy", "sma_cross"]
    done = run(["n1v1", *argv, *common, "--address", f"127.0.0.1:{port}"], tmp_path, env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"n1v1: error: cannot reach Ray at --address 127.0.0.1:{port}")
