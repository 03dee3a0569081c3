"""Where a job may write (n1v1/locations.py): never into Ray's temporary copy of its working dir.

Under `ray job submit --working-dir .` the entry point runs inside a copy of the checkout that
Ray deletes with its session; a relative model root, checkpoint directory or output resolved
there, and the job's model was lost although the job succeeded. Each job entry point (jobs/*.py)
is run here as `ray job submit` runs it: a process whose working directory is laid out like
Ray's copy and whose environment carries Ray's job config. tests/test_job_registry.py submits a
real job to a real cluster.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from n1v1.config import ConfigError
from n1v1.locations import RAY_JOB_ENV, in_ray_job, persistent_locations

ROOT = Path(__file__).resolve().parents[1]
IN_JOB = {RAY_JOB_ENV: json.dumps({"runtime_env": {"working_dir": "gcs://_ray_pkg_1.zip"}})}
COPY = Path("/tmp/ray/session_2026-01-01_00-00-00_1/runtime_resources/working_dir_files/_ray_pkg_1")


def test_the_job_marker_is_rays_own() -> None:
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    assert RAY_JOB_ENV == RAY_JOB_CONFIG_JSON_ENV_VAR
    assert in_ray_job(IN_JOB) and not in_ray_job({})


def test_outside_a_job_a_relative_location_is_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = persistent_locations({"ml.model_root": "models", "--json": None}, env={})
    assert where == {"ml.model_root": str(tmp_path.resolve() / "models"), "--json": None}


def test_in_a_job_absolute_paths_and_uris_pass_and_relative_ones_are_refused() -> None:
    kept = persistent_locations(
        {"ml.model_root": "/mnt/n1v1/models", "ml.storage_path": "s3://bucket/runs"},
        uris={"ml.storage_path"},
        env=IN_JOB,
    )
    assert kept == {"ml.model_root": "/mnt/n1v1/models", "ml.storage_path": "s3://bucket/runs"}
    with pytest.raises(ConfigError) as refused:
        persistent_locations({"ml.model_root": "s3://bucket/models"}, env=IN_JOB)  # no URI here
    assert "ml.model_root is 's3://bucket/models', a relative path" in str(refused.value)


def test_a_refusal_names_every_location_its_flag_and_variable_and_what_to_pass(tmp_path):
    with pytest.raises(ConfigError) as refused:
        persistent_locations(
            {"ml.model_root": "models", "--out": "out/sweep", "N1V1_STORE_URL": "var/n1v1.db"},
            spelled={"N1V1_STORE_URL": "sqlite:///{}"},
            env=IN_JOB,
        )
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("ml.model_root is 'models', a relative path, and this is a Ray job")
    assert lines[1] == (
        '  pass an absolute path on storage that outlives the job, e.g. --model-root "$PWD/models"'
        ", or N1V1_ML__MODEL_ROOT in the job's environment (--runtime-env-json "
        '\'{"env_vars": {"N1V1_ML__MODEL_ROOT": "/abs/models"}}\')'
    )
    assert lines[3].endswith('e.g. --out "$PWD/out/sweep"')
    assert lines[5].endswith(
        '(--runtime-env-json \'{"env_vars": {"N1V1_STORE_URL": "sqlite:////abs/var/n1v1.db"}}\')'
    )
    assert lines[-1].startswith("nothing was written")


def test_a_path_inside_rays_copy_is_refused_even_outside_a_job() -> None:
    with pytest.raises(ConfigError) as refused:
        persistent_locations({"ml.model_root": str(COPY / "var" / "models")}, env={})
    message = str(refused.value)
    assert f"resolves to {COPY}/var/models, inside Ray's temporary copy" in message
    assert '--model-root "$PWD/var/models"' in message  # the same place in the checkout
    beside = COPY.parents[2] / "logs" / "models"  # the session dir, but not its runtime resources
    assert persistent_locations({"--out": str(beside)}, env={}) == {"--out": str(beside)}


# -- the entry points, as `ray job submit` runs them ----------------------------------------------
ENTRY_POINTS = {  # the job's command line, and what its refusal must name
    "train": (
        "train.py --name m --data coinbase_BTC-USD_1m",
        ["ml.storage_path is 'ray_results'", "ml.model_root is 'models'"],
    ),
    "retrain": (
        "retrain.py --name m --data coinbase_BTC-USD_1m --schedule '0 2 * * *' "
        "--store-url sqlite:///var/n1v1.db "
        "--model-root /mnt/n1v1/models --storage-path /mnt/n1v1/ray_results",
        ["--store-url is 'var/n1v1.db'", '--store-url "sqlite:///$PWD/var/n1v1.db"'],
    ),
    "sweep": (  # its default --out
        "sweep.py --data coinbase_BTC-USD_1d --strategy sma_cross",
        ["--out is 'out/sweep'"],
    ),
    "walkforward": (
        "walkforward.py --data coinbase_BTC-USD_1d --strategy sma_cross --train-bars 365 "
        "--test-bars 90 --report out/wf.html",
        ["--report is 'out/wf.html'"],
    ),
}


@pytest.mark.parametrize("job", sorted(ENTRY_POINTS))
def test_each_job_refuses_to_write_into_its_working_dir_copy(job: str, tmp_path: Path) -> None:
    command, named = ENTRY_POINTS[job]
    argv = shlex.split(command)
    copy = tmp_path / "session_1" / "runtime_resources" / "working_dir_files" / "_ray_pkg_1"
    copy.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS" and not k.startswith("N1V1_")}
    env.update(IN_JOB, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled")
    script = [sys.executable, str(ROOT / "jobs" / argv[0]), *argv[1:]]
    out = subprocess.run(script, cwd=copy, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "a relative path, and this is a Ray job" in out.stderr
    assert "in Ray's temporary copy of the submitted working dir" in out.stderr
    for text in named:
        assert text in out.stderr, out.stderr
    assert out.stderr.rstrip().endswith('see docs/ml/training.md, "Where a job writes"')
    assert list(copy.iterdir()) == []  # nothing written


# -- the documented commands -----------------------------------------------------------------------
def documented_job_commands() -> list[tuple[str, list[str]]]:
    """Every `ray job submit` command in README.md and docs/, split as the shell splits it (a
    quoted "$PWD/..." stays one word; continuation lines and quotes over lines joined)."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if not re.match(r"\s*(\.venv/bin/)?ray job submit ", line):
                continue
            command = line
            while True:
                try:
                    argv = shlex.split(command, comments=True)
                except ValueError:  # a quote still open: it goes on on the next line
                    argv = []
                if argv and not command.rstrip().endswith("\\"):
                    break
                i += 1
                command = command.rstrip().removesuffix("\\") + "\n" + lines[i]
            found.append((page.name, argv))
    return found


def test_documented_jobs_run_the_venvs_python_locally_and_write_only_absolute_locations():
    commands = documented_job_commands()
    assert len(commands) >= 6, commands
    trains = 0
    for page, argv in commands:
        entry = argv[argv.index("--") + 1 :]
        if "http://127.0.0.1:8265" in argv and "--working-dir" in argv:  # a head on this machine
            assert entry[0] == "$PWD/.venv/bin/python", (page, argv)
        for flag in ("--model-root", "--storage-path", "--out", "--report", "--json"):
            if flag in entry:
                value = entry[entry.index(flag) + 1]
                assert value.startswith(("$PWD/", "/", "s3://")), (page, flag, value)
        if entry[1].endswith("train.py"):
            trains += 1
            runtime = (
                argv[argv.index("--runtime-env-json") + 1] if "--runtime-env-json" in argv else ""
            )
            for flag, variable in (
                ("--model-root", "MODEL_ROOT"),
                ("--storage-path", "STORAGE_PATH"),
            ):
                assert flag in entry or f"N1V1_ML__{variable}" in runtime, (page, argv)
    assert trains >= 3
