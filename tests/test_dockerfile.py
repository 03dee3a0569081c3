"""The image (Dockerfile): its base follows pyproject's pins, and its install steps give a working
N1V1 outside the source tree.

No Docker daemon runs here. The install test replays the Dockerfile (tests/dockerfile.py): the
same COPYs, then the same pip commands in a fresh virtual environment. That environment sees the
project environment's packages (a folder of links to them, without n1v1 itself) as the Ray image
already holds Ray, and pip runs with no index, so it must find every pinned dependency satisfied:
a pin in the wheel that differs from what is installed fails here instead of downloading.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from dockerfile import DOCKERFILE, ROOT, Replay, base_versions, parse, pinned_torch
from project import PYPROJECT, pin

from n1v1.store.migrate import HEAD


def python_pin() -> str:
    """`>=3.11,<3.12` -> 3.11: the one minor version the project runs on."""
    match = re.fullmatch(r">=(\d+)\.(\d+),<(\d+)\.(\d+)", PYPROJECT["project"]["requires-python"])
    assert match, PYPROJECT["project"]["requires-python"]
    major, minor, major_end, minor_end = map(int, match.groups())
    assert (major_end, minor_end) == (major, minor + 1), "requires-python spans several minors"
    return f"{major}.{minor}"


def drift(text: str) -> list[str]:
    """What in this Dockerfile text disagrees with pyproject's pins."""
    stages = parse(text)
    problems = []
    for line, ray, python in base_versions(stages):
        if ray != pin("ray"):
            problems.append(f"Dockerfile:{line}: Ray {ray}, pyproject pins ray=={pin('ray')}")
        if python != python_pin():
            problems.append(f"Dockerfile:{line}: Python {python}, pyproject wants {python_pin()}")
    torch = pinned_torch(stages)
    if torch != [pin("torch")]:
        problems.append(f"Dockerfile installs torch {torch}, pyproject pins torch=={pin('torch')}")
    return problems


def test_base_image_and_torch_follow_the_pins() -> None:
    stages = parse(DOCKERFILE.read_text())
    assert len(stages) == 2 and stages[0].name == "wheel"
    assert drift(DOCKERFILE.read_text()) == []


def test_the_drift_check_names_each_mismatch() -> None:
    text = DOCKERFILE.read_text()
    line = next(n for n, t in enumerate(text.splitlines(), start=1) if t.endswith(" AS wheel"))
    older = text.replace(f"ray:{pin('ray')}-py311-cpu AS wheel", "ray:2.59.0-py311-cpu AS wheel")
    assert drift(older) == [f"Dockerfile:{line}: Ray 2.59.0, pyproject pins ray=={pin('ray')}"]
    other_python = text.replace("-py311-cpu", "-py312-cpu")
    assert [p.split(": ", 1)[1] for p in drift(other_python)] == [
        "Python 3.12, pyproject wants 3.11",
        "Python 3.12, pyproject wants 3.11",
    ]
    assert drift(text.replace("torch==2.13.0", "torch==2.12.0")) == [
        f"Dockerfile installs torch ['2.12.0'], pyproject pins torch=={pin('torch')}"
    ]
    with pytest.raises(ValueError, match=rf"Dockerfile:{line}: FROM python:3\.11 is not"):
        drift(text.replace(f"rayproject/ray:{pin('ray')}-py311-cpu AS", "python:3.11 AS"))


def test_no_manifest_pulls_code_at_run_time() -> None:
    """The code is in the image: no runtime_env working_dir or py_modules anywhere we deploy."""
    files = [ROOT / "serve_config.yaml", *sorted((ROOT / "kuberay").rglob("*.yaml"))]
    hits = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), start=1)
        if re.search(r"\b(working_dir|py_modules|runtime_env)\b", line.split("#")[0])
    ]
    assert hits == []


def linked_site_packages(tmp: Path) -> Path:
    """A folder of links to this environment's packages, less n1v1 and its editable hook."""
    site = Path(sysconfig.get_paths()["purelib"])
    links = tmp / "deps"
    links.mkdir()
    for entry in site.iterdir():
        name = entry.name
        if name == "n1v1" or name.startswith(("n1v1-", "__editable__")) or name.endswith(".pth"):
            continue
        (links / name).symlink_to(entry)
    return links


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Replay, Path]:
    """The Dockerfile replayed: (the replay, the fresh venv's python)."""
    tmp = tmp_path_factory.mktemp("image")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    (site / "image_base.pth").write_text(f"{linked_site_packages(tmp)}\n")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        HOME=str(tmp / "root" / "home" / "ray"),
        PIP_NO_INDEX="1",  # offline: every dependency must already be satisfied
        PIP_CONFIG_FILE=os.devnull,  # this machine's pip settings are not the image's
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    replay = Replay(tmp / "root", env)
    for stage in parse(DOCKERFILE.read_text()):
        replay.run_stage(stage)
    return replay, venv / "bin" / "python"


@pytest.mark.slow
def test_the_dockerfile_steps_build_and_install_the_wheel(image: tuple[Replay, Path]) -> None:
    replay, _ = image
    assert replay.skipped_as_root == ["sed -i '/^ray ALL=NOPASSWD: ALL$/d' /etc/sudoers"]
    assert len(replay.ran) == 2  # the wheel build, then torch + the wheel
    assert not (replay.root / "tmp" / "wheels").exists()  # removed after the install


@pytest.mark.slow
def test_the_wheel_carries_every_package_file(image: tuple[Replay, Path]) -> None:
    replay, _ = image
    (wheel,) = (replay.root / "home" / "ray" / "wheels").glob("n1v1-*.whl")
    assert wheel.name == f"n1v1-{PYPROJECT['project']['version']}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "n1v1"
    expected = {
        str(p.relative_to(ROOT))
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert expected - names == set()
    # the package data a user sees: bundled datasets, the dashboard, the offline API docs
    assert {
        "n1v1/data/samples/coinbase_BTC-USD_1m.csv",
        "n1v1/data/samples/NOTICE",
        "n1v1/serve/static/dashboard.html",
        "n1v1/serve/static/swagger-ui/swagger-ui-bundle.js",
    } <= names


@pytest.mark.slow
def test_the_installed_wheel_imports_outside_the_source_tree(
    image: tuple[Replay, Path], tmp_path: Path
) -> None:
    replay, python = image
    code = (
        "import importlib.resources, n1v1\n"
        "from n1v1.serve.app import build_app\n"
        "from n1v1.data.datasets import dataset_names\n"
        "print(n1v1.__file__)\n"
        "print(build_app.__module__, len(dataset_names()))\n"
        "print((importlib.resources.files('n1v1.serve') / 'static/dashboard.html').is_file())\n"
        "from n1v1.store.migrate import script_head\n"
        "print(script_head())\n"
    )
    out = subprocess.run(
        [str(python), "-c", code],
        cwd=tmp_path,
        env=replay.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    where, builder, dashboard, migrations_head = out.stdout.split("\n")[:4]
    venv = python.parents[1]
    assert Path(where).is_relative_to(venv), f"n1v1 came from {where}, not the installed wheel"
    assert not Path(where).is_relative_to(ROOT)
    assert builder == "n1v1.serve.app 7"  # the seven bundled datasets, read from the wheel
    assert dashboard == "True"
    assert migrations_head == HEAD  # the store's migrations ship in the wheel and load from it


@pytest.mark.slow
def test_every_job_entry_point_runs_from_the_image_layout(
    image: tuple[Replay, Path], tmp_path: Path
) -> None:
    replay, python = image
    jobs = sorted((replay.root / "home" / "ray" / "jobs").glob("*.py"))
    assert {j.name for j in jobs} == {p.name for p in (ROOT / "jobs").glob("*.py")}
    assert {"train.py", "sweep.py", "walkforward.py"} <= {j.name for j in jobs}
    for job in jobs:
        out = subprocess.run(
            [str(python), str(job), "--help"],
            cwd=tmp_path,
            env=replay.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, f"{job.name}: {out.stderr[-2000:]}"
        assert out.stdout.startswith("usage: "), f"{job.name}: {out.stdout[:200]}"
