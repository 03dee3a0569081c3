"""The notebooks in notebooks/, executed with nbclient on small inputs, as a researcher runs them.

- The committed files carry no outputs (execution_count null) and are exactly what
  notebooks/build_notebooks.py writes, so a review of the generator is a review of the notebooks.
- research.ipynb attaches to a Ray cluster this module starts (`ray start --head --block` in a
  subprocess of our own, on free ports, stopped by its process id at the end), on which the
  module also runs the Serve app (`build_app(AppArgs(...))` with a short replay and a known
  token). The notebook's sweep and walk-forward run as Ray tasks there, and its live section
  reads the app over HTTP and through the Engine deployment handle.
- model_report.ipynb evaluates a tiny model registered here (a card like `n1v1 train` writes).

Parameters are injected by replacing the source of the cell tagged "parameters" (what papermill
does, without papermill). The kernel is the venv's Python: a "python3" kernelspec whose argv is
this interpreter, in a directory only this module's kernel manager searches.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import requests
from dashboard_api import free_port
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode
from test_ml_signal import FEATURES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("research.ipynb", "model_report.ipynb")
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
TOKEN = "nb-admin-" + secrets.token_hex(12)
APP = "n1v1"
HEAD_START_TIMEOUT = 120  # s for `ray start --head` to report the runtime started
CELL_TIMEOUT = 300  # s per notebook cell


# -- helpers ---------------------------------------------------------------------------------------
def read(name: str) -> NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", NOTEBOOKS / "build_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parameters_cell(nb: NotebookNode) -> NotebookNode:
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def parameter_defaults(nb: NotebookNode) -> dict[str, Any]:
    """NAME = literal assignments of the parameters cell (anything else there is an error)."""
    values = {}
    for node in ast.parse(parameters_cell(nb).source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, ast.dump(node)
        target = node.targets[0]
        assert isinstance(target, ast.Name), f"line {node.lineno}: not NAME = value"
        values[target.id] = ast.literal_eval(node.value)
    return values


def inject(nb: NotebookNode, **values: Any) -> NotebookNode:
    """Replace the parameters cell's source by its defaults updated with `values`."""
    defaults = parameter_defaults(nb)
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise KeyError(f"not parameters of this notebook: {unknown} (it has {sorted(defaults)})")
    merged = {**defaults, **values}
    lines = ["# Parameters injected by tests/test_notebooks.py"]
    lines += [f"{name} = {value!r}" for name, value in merged.items()]
    parameters_cell(nb).source = "\n".join(lines)
    return nb


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A "python3" kernelspec that runs this interpreter (the venv's), found by no one else."""
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    spec_dir = kernels / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (n1v1 venv)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return [str(kernels)]


def kernel_env() -> dict[str, str]:
    """This process's environment for the kernel, minus anything that would pick a cluster or
    change settings behind the notebook's back."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "RAY_ADDRESS" and not key.startswith("N1V1_")
    }
    return {**env, **RAY_ENV}


def execute(nb: NotebookNode, cwd: Path, kernel_dirs: list[str]) -> NotebookNode:
    """Run every cell; a failing cell fails the test with its traceback (the executed notebook
    is kept in `cwd` for a look)."""
    km = AsyncKernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs)
    )
    client = NotebookClient(
        nb,
        km=km,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        resources={"metadata": {"path": str(cwd)}},
    )
    try:
        client.execute(env=kernel_env())
    except CellExecutionError as exc:
        nbformat.write(nb, cwd / "failed.ipynb")
        pytest.fail(f"a notebook cell failed (executed copy: {cwd / 'failed.ipynb'}):\n{exc}")
    nbformat.write(nb, cwd / "executed.ipynb")
    return nb


def cell(nb: NotebookNode, cell_id: str) -> NotebookNode:
    (found,) = [c for c in nb.cells if c.get("id") == cell_id]
    return found


def text_of(nb: NotebookNode, cell_id: str) -> str:
    """Everything the cell printed or displayed as text."""
    parts = []
    for out in cell(nb, cell_id).outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts.append(out.data.get("text/plain", ""))
    return "".join(parts)


def png_count(nb: NotebookNode, cell_id: str) -> int:
    return sum(
        1
        for out in cell(nb, cell_id).outputs
        if out.output_type == "display_data" and "image/png" in out.data
    )


def errors(nb: NotebookNode) -> list[str]:
    return [
        f"cell {c.get('id')}: {out.ename}: {out.evalue}"
        for c in nb.cells
        if c.cell_type == "code"
        for out in c.outputs
        if out.output_type == "error"
    ]


# -- the committed files ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{name}: no code cells"
    for c in code:
        assert c.outputs == [], f"{name} cell {c.id}: outputs committed"
        assert c.execution_count is None, f"{name} cell {c.id}: execution_count committed"
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, f"{name}: {sorted(nb.metadata)}"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_what_the_generator_writes(name: str) -> None:
    assert (NOTEBOOKS / name).read_text() == generator().render(name), (
        f"notebooks/{name} differs from notebooks/build_notebooks.py: run "
        "`python notebooks/build_notebooks.py` and commit the result"
    )


def test_parameters_cells_hold_the_documented_inputs() -> None:
    research = parameter_defaults(read("research.ipynb"))
    assert research["RAY_ADDRESS"] is None and research["SERVE_URL"] is None
    assert research["SMALL"] is False and research["API_TOKEN"] is None
    report = parameter_defaults(read("model_report.ipynb"))
    assert {"MODEL_ROOT", "MODEL_NAME", "DATASET", "SMALL"} <= set(report)
    with pytest.raises(KeyError, match="NOT_A_PARAMETER"):
        inject(read("research.ipynb"), NOT_A_PARAMETER=1)


# -- a Ray cluster with the Serve app --------------------------------------------------------------
@dataclass
class LiveCluster:
    address: str  # GCS address, what RAY_ADDRESS takes
    serve_url: str


def _start_head(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`ray start --head --block` on free ports (never 6379: the machine's Redis has it), in a
    process group of its own; returns the process and the GCS address once it is up."""
    port = free_port()
    ports = {
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    cmd = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=4",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={tmp / 'ray'}",
        *(f"{flag}={value}" for flag, value in ports.items()),
    ]
    log = tmp / "head.log"
    with log.open("wb") as out:
        head = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            # no drain on SIGTERM (Ray's default waits up to 30 s for the node to be idle, which
            # a node still running the Serve app never is): _stop_head ends it at once
            env={**kernel_env(), **RAY_ENV, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
            start_new_session=True,
        )
    deadline = time.monotonic() + HEAD_START_TIMEOUT
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            _stop_head(head)
            pytest.fail(f"ray start --head did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.5)
    return head, f"127.0.0.1:{port}"


def _stop_head(head: subprocess.Popen[bytes]) -> None:
    """SIGTERM to our `ray start --block`, which stops the node's processes; then the process
    group it led (ours alone) is killed in case anything outlived it."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait(10)


def _app_args(tmp: Path) -> Any:
    from n1v1.serve.args import AppArgs

    return AppArgs.model_validate(
        {
            "store_url": f"sqlite:///{tmp / 'live.db'}",
            "model_root": str(tmp / "models"),
            # 4 hours of minute bars replayed flat out: the feed is done before the notebook runs,
            # so what the notebook reads is what the test reads
            "feed": {
                "kind": "replay",
                "datasets": ["coinbase_BTC-USD_1m"],
                "start": "2018-04-04 00:00",
                "end": "2018-04-04 04:00",
                "bars_per_second": 0,
            },
            "strategies": [{"name": "sma_cross", "params": {"fast": 5, "slow": 20}}],
            "api": {"max_replicas": 1},
            "model": {"max_replicas": 1},
        }
    )


def _status(url: str) -> dict[str, Any]:
    response = requests.get(
        f"{url}/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    response.raise_for_status()
    return response.json()


def _wait_until_exhausted(url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = _status(url)
            if last.get("state") == "replay_finished" and last.get("feed_exhausted"):
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"the app's replay did not finish within {timeout:.0f} s (last: {last})")


@pytest.fixture(scope="module")
def live_cluster() -> Iterator[LiveCluster]:
    import ray
    from ray import serve

    from n1v1.serve.app import TOKEN_ENV, build_app

    # short: Ray's unix socket paths under the temp dir must stay below 108 characters
    tmp = Path(tempfile.mkdtemp(prefix="n1v1-nb-", dir="/tmp"))
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    try:
        head, address = _start_head(tmp)
        try:
            ray.init(address=address, log_to_driver=False)
            http_port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": http_port})
            os.environ[TOKEN_ENV] = TOKEN  # build_app reads it here; replicas get its hash
            try:
                app = build_app(_app_args(tmp))
            finally:
                os.environ.pop(TOKEN_ENV, None)
            serve.run(app, name=APP, route_prefix="/")
            url = f"http://127.0.0.1:{http_port}"
            _wait_until_exhausted(url, 60)
            yield LiveCluster(address=address, serve_url=url)
        finally:
            # Serve goes with our head (_stop_head): serve.shutdown() would first drain every
            # replica gracefully, seconds that check nothing here
            ray.shutdown()
            _stop_head(head)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(tmp, ignore_errors=True)


# -- research.ipynb --------------------------------------------------------------------------------
@pytest.mark.slow
def test_research_notebook_runs_on_the_cluster_and_reads_the_live_app(
    live_cluster: LiveCluster, kernel_dirs: list[str], tmp_path: Path
) -> None:
    status = _status(live_cluster.serve_url)
    equity = requests.get(
        f"{live_cluster.serve_url}/api/v1/equity",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    ).json()
    nb = inject(
        read("research.ipynb"),
        RAY_ADDRESS=live_cluster.address,
        NUM_CPUS=1,  # used only by a local Ray: "4 CPUs" below proves the notebook attached
        SMALL=True,
        SERVE_URL=live_cluster.serve_url,
        API_TOKEN=TOKEN,
    )
    nb = execute(nb, tmp_path, kernel_dirs)
    assert errors(nb) == []

    assert "1 node(s), 4 CPUs" in text_of(nb, "setup")
    assert "BTC/USD, 700 bars" in text_of(nb, "data")
    backtest = text_of(nb, "backtest")
    assert "engine: fast" in backtest and "total_return" in backtest
    sweep = text_of(nb, "sweep")
    # SMALL grid: fast 5..30 step 5 x slow 20..100 step 20 = 30 combinations, 3 with fast >= slow
    assert "27 parameter sets evaluated; 3 dropped as invalid" in sweep
    assert "rank  fast  slow" in sweep
    assert "#1 {'fast'" in sweep
    walkforward = text_of(nb, "walkforward")
    assert "4 rolling windows of 250 in-sample and 100 out-of-sample bars" in walkforward
    tables = text_of(nb, "wf-tables")
    for heading in ("In-sample vs out-of-sample", "Parameter stability", "Deflated Sharpe ratio"):
        assert heading in tables
    for plot in ("backtest", "heatmap", "wf-equity", "live-http"):
        assert png_count(nb, plot) == 1, f"cell {plot}: expected one PNG plot"

    live = text_of(nb, "live-http")
    assert "'state': 'replay_finished'" in live and f"'step': {status['step']}" in live
    assert f"points (of {equity['total']})" in live
    handle = text_of(nb, "live-handle")
    assert f"application {APP}: RUNNING" in handle
    assert "Engine.status() through the handle" in handle
    assert f"'step': {status['step']}" in handle and "'feed_exhausted': True" in handle


# -- model_report.ipynb ----------------------------------------------------------------------------
def register_recipe(root: Path) -> str:
    """A small registered model with a card `n1v1 evaluate` can retrain: FEATURES' short windows
    keep the warm-up small; the weights are untrained (the report retrains the recipe anyway)."""
    from n1v1.ml.features import feature_hash, feature_names
    from n1v1.ml.labels import LabelSpec
    from n1v1.ml.models import ModelSpec, build_model
    from n1v1.ml.registry import ModelRegistry
    from n1v1.ml.scaling import Standardizer

    model, labels = ModelSpec(hidden=(8,)), LabelSpec(horizon=5)
    names = feature_names(FEATURES)
    card = {
        "name": "nb_tiny",
        "model_spec": model.model_dump(mode="json"),
        "feature_spec": FEATURES.model_dump(mode="json"),
        "feature_names": names,
        "feature_hash": feature_hash(FEATURES),
        "label_spec": labels.model_dump(mode="json"),
        "n_features": len(names),
        "n_classes": 2,
        "data": {"timeframe": "5m"},
        "hyperparameters": {"lr": 1e-3, "batch_size": 256, "epochs_max": 5, "patience": 1},
        "metrics": {"val_auc": 0.5},
    }
    net = build_model(model, len(names), 2, seed=0)
    scaler = Standardizer().fit(np.random.default_rng(0).normal(size=(10, len(names))))
    registry = ModelRegistry(root)
    version = registry.register(
        "nb_tiny", state_dict=net.state_dict(), scaler=scaler.to_dict(), card=card
    )
    registry.promote("nb_tiny", version, force=True)
    return version


@pytest.mark.slow
def test_model_report_notebook_evaluates_a_registered_model(
    kernel_dirs: list[str], tmp_path: Path
) -> None:
    version = register_recipe(tmp_path / "models")
    nb = inject(
        read("model_report.ipynb"),
        MODEL_ROOT=str(tmp_path / "models"),
        MODEL_NAME="nb_tiny",
        DATASET="coinbase_BTC-USD_1m",
        SMALL=True,
    )
    nb = execute(nb, tmp_path, kernel_dirs)
    assert errors(nb) == []

    recipe = text_of(nb, "recipe")
    assert f"nb_tiny {version}: mlp, binary labels, horizon 5" in recipe
    assert "up to 2 epochs per fold" in recipe  # SMALL caps the card's 5
    evaluated = text_of(nb, "evaluate")
    assert "1,500 bars, 2 rolling folds" in evaluated
    assert "fold 0: test" in evaluated and "fold 1: test" in evaluated
    assert "AUC (calibrated)" in evaluated and "ml_signal return" in evaluated
    for plot in ("auc", "reliability", "equity"):
        assert png_count(nb, plot) == 1, f"cell {plot}: expected one PNG plot"
    economics = text_of(nb, "equity")
    assert "ml_signal" in economics and "buy_and_hold" in economics
