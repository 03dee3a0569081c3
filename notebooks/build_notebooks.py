"""Write notebooks/research.ipynb and notebooks/model_report.ipynb from the cells below.

The notebooks are generated so that they are reviewed as code: change a cell here, run
`python notebooks/build_notebooks.py`, commit both files. They are written without outputs and
with execution_count null (tests/test_notebooks.py checks this, and that the committed files are
exactly what this script writes). Every cell has a stable id, which the test uses to find the
outputs it checks. The cell tagged "parameters" holds the inputs, as papermill expects; the test
replaces its source to run on small inputs against its own Ray cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

Cell = tuple[str, str, str]  # (id, "md" | "code" | "parameters", source)


# Cell sources are written from column 0, so a line here is the line in the notebook.
def md(cell_id: str, source: str) -> Cell:
    return (cell_id, "md", source)


def code(cell_id: str, source: str) -> Cell:
    return (cell_id, "code", source)


def parameters(cell_id: str, source: str) -> Cell:
    """The papermill parameters cell: a code cell tagged "parameters"."""
    return (cell_id, "parameters", source)


# -- research.ipynb --------------------------------------------------------------------------------
RESEARCH: list[Cell] = [
    md(
        "title",
        """
# Research on a Ray cluster

A parameter search that looks good on the history it was tuned on says little about the
next bars. This notebook goes from one backtest to a grid sweep, then to a walk-forward
optimisation that only ever trades parameters chosen on earlier bars, and ends with a look
at the paper-trading Serve app on the same cluster. The heavy parts (hundreds of
backtests) run as Ray tasks, so the same cells scale from a laptop to a cluster.

Run it as it is to start a private local Ray, or set `RAY_ADDRESS` below to attach to a
running cluster (`ray start --head` prints the address; with KubeRay use the head
service). With `SERVE_URL` and `API_TOKEN` set, the last section talks to the live app.
docs/research.md explains the numbers.
""",
    ),
    parameters(
        "parameters",
        """
# Parameters (papermill: this cell is tagged "parameters").
RAY_ADDRESS = None  # None: start a private local Ray; else attach, e.g. "10.0.0.5:6379"
NUM_CPUS = 4  # CPUs of the local Ray (not used when attaching)
SMALL = False  # small inputs: fewer bars and parameter sets (the test suite)
DATASET = "coinbase_BTC-USD_1d"  # a bundled dataset or a CSV/Parquet path
FEE = 0.001  # maker and taker fee, as a fraction of the notional
SERVE_URL = None  # the Serve app, e.g. "http://127.0.0.1:8000"; None skips that section
API_TOKEN = None  # the app's N1V1_API_TOKEN (the read-only token is enough here)
APP_NAME = "n1v1"  # the Serve application's name (serve_config.yaml)
""",
    ),
    md(
        "setup-md",
        """
## Connect to Ray

`address="local"` starts a Ray of this kernel's own even when another cluster runs on the
machine, so a local run never lands on someone else's cluster by accident. Plots are drawn
inline (the Agg renderer, so no display is needed).
""",
    ),
    code(
        "setup",
        """
%matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd
import ray

from n1v1.backtest.runner import run_backtest
from n1v1.config import Settings
from n1v1.data.market import load_market
from n1v1.research.distributed import RayEvaluator
from n1v1.research.space import grid_sets
from n1v1.research.sweep import SweepSpec, run_parameter_sweep
from n1v1.research.walkforward import walk_forward_optimise
from n1v1.strategies.registry import create_strategy, get_strategy

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 30)

if ray.is_initialized():
    print("Ray was already initialised in this kernel; using that connection")
elif RAY_ADDRESS is None:
    ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False)
else:
    ray.init(address=RAY_ADDRESS)
alive = sum(1 for node in ray.nodes() if node["Alive"])
cpus = ray.cluster_resources().get("CPU", 0)
print(f"Ray {ray.__version__}: {alive} node(s), {cpus:g} CPUs")
""",
    ),
    md(
        "data-md",
        """
## Data

Every run below reads the same bars and the same costs, so their numbers are comparable.
Fees are charged on both sides; a strategy that only wins before fees is not a strategy.
""",
    ),
    code(
        "data",
        """
SETTINGS = Settings.model_validate({"execution": {"maker_fee": FEE, "taker_fee": FEE}})
bars = load_market(DATASET)
if SMALL:
    bars = bars.iloc[-700:]
symbol = str(bars.attrs.get("symbol") or DATASET)
frames = {symbol: bars}
first, last = bars.index[0], bars.index[-1]
print(f"{DATASET}: {symbol}, {len(bars):,} bars from {first:%Y-%m-%d} to {last:%Y-%m-%d}")
bars.tail(3)
""",
    ),
    md(
        "backtest-md",
        """
## One backtest

A single run with default parameters is the reference the search has to beat, and
buy-and-hold is the reference both have to beat: most of a trend strategy's return on
this market comes from simply being long.
""",
    ),
    code(
        "backtest",
        """
baseline = run_backtest(bars, create_strategy("sma_cross"), SETTINGS)
hold = run_backtest(bars, create_strategy("buy_and_hold"), SETTINGS)
shown = ["total_return", "cagr", "sharpe", "max_drawdown", "n_trades", "win_rate",
         "exposure", "fees_paid"]  # fmt: skip
table = pd.DataFrame(
    {f"sma_cross {baseline.params}": baseline.metrics, "buy_and_hold": hold.metrics}
).loc[shown]
print(f"engine: {baseline.engine}")
print(table.to_string(float_format=lambda x: f"{x:,.4f}"))

fig, ax = plt.subplots(figsize=(10, 3.5))
ax.plot(baseline.equity.index, baseline.equity.to_numpy(), label="sma_cross (defaults)")
ax.plot(hold.equity.index, hold.equity.to_numpy(), label="buy_and_hold", alpha=0.7)
ax.set_yscale("log")
ax.set_ylabel("equity")
ax.set_title(f"{symbol}: one backtest")
ax.legend()
plt.show()
""",
    ),
    md(
        "sweep-md",
        """
## Grid sweep on Ray

Each parameter set is one compiled fast-path backtest; `RayEvaluator` puts the bars into
the object store once and sends chunks of sets to the workers, so the task overhead is
paid per chunk, not per set. The sets are ranked by Sharpe ratio (sets with fewer than
three trades are not ranked: a Sharpe ratio of two trades is noise), and the best three
are re-run through the event-driven engine to check the fast path and to get their
trades.
""",
    ),
    code(
        "sweep",
        """
grid = {"fast": "5:50:5", "slow": "20:200:10"}
if SMALL:
    grid = {"fast": "5:30:5", "slow": "20:100:20"}
spec = SweepSpec(strategy="sma_cross", params=grid, metric="sharpe", min_trades=3, top_k=3)
sweep = run_parameter_sweep(frames, spec, SETTINGS, RayEvaluator(progress=True))
why = f": {sweep.drop_reasons[0]}" if sweep.drop_reasons else ""
print(f"{sweep.n_sets} parameter sets evaluated; {sweep.dropped} dropped as invalid{why}")
columns = ["rank", "fast", "slow", "sharpe", "total_return", "max_drawdown", "n_trades"]
print(sweep.summary[columns].head(10).to_string(index=False))
print()
print("best sets through the event-driven engine (sweep Sharpe / engine Sharpe, trades):")
for best in sweep.best:
    engine = best.backtests[symbol].metrics
    print(
        f"  #{best.rank} {best.params}: {best.sweep[symbol]['sharpe']:.4f} / "
        f"{engine['sharpe']:.4f}, {engine['n_trades']} trades"
    )
""",
    ),
    md(
        "heatmap-md",
        """
A single bright cell surrounded by dark ones is a fluke of this history; a broad plateau
is a region worth trading. Blank cells are invalid sets (fast must be below slow) or sets
with too few trades to rank.
""",
    ),
    code(
        "heatmap",
        """
ranked = sweep.summary[sweep.summary["eligible"]]
surface = ranked.pivot_table(index="slow", columns="fast", values=spec.metric)
fig, ax = plt.subplots(figsize=(8, 6))
image = ax.imshow(surface.to_numpy(), origin="lower", aspect="auto", cmap="viridis")
ax.set_xticks(range(len(surface.columns)), [str(v) for v in surface.columns])
ax.set_yticks(range(len(surface.index)), [str(v) for v in surface.index])
top = sweep.best[0].params
ax.scatter(
    [surface.columns.get_loc(top["fast"])],
    [surface.index.get_loc(top["slow"])],
    marker="*", s=250, color="red", label=f"best: fast={top['fast']}, slow={top['slow']}",
)  # fmt: skip
ax.set_xlabel("fast")
ax.set_ylabel("slow")
ax.set_title(f"sma_cross on {symbol}: {spec.metric} per parameter set")
fig.colorbar(image, ax=ax, label=spec.metric)
ax.legend(loc="upper right")
plt.show()
""",
    ),
    md(
        "walkforward-md",
        """
## Walk-forward optimisation

The sweep above chose its best set knowing the whole history. Walk-forward repeats the
choice on a rolling training window and trades the chosen set only on the bars after it;
the out-of-sample pieces, stitched together, are what the research process would have
earned. Every window's in-sample sweep runs on Ray.
""",
    ),
    code(
        "walkforward",
        """
if SMALL:
    wf_grid, train_bars, test_bars = {"fast": "5:30:5", "slow": "20:100:20"}, 250, 100
else:
    wf_grid, train_bars, test_bars = {"fast": "5:50:5", "slow": "20:200:20"}, 500, 150
wf_sets = grid_sets(get_strategy("sma_cross"), wf_grid)
wf = walk_forward_optimise(
    frames,
    "sma_cross",
    wf_sets,
    SETTINGS,
    train_bars=train_bars,
    test_bars=test_bars,
    mode="rolling",
    metric="sharpe",
    min_trades=3,
    evaluator=RayEvaluator(),
)
print(
    f"{wf_sets.describe()}; {len(wf.windows)} rolling windows of {train_bars} in-sample "
    f"and {test_bars} out-of-sample bars"
)
for note in wf.notes:
    print(f"note: {note}")
""",
    ),
    md(
        "wf-equity-md",
        """
The dashed lines are window boundaries: each segment trades the set chosen on the bars
before it. Buy-and-hold over the same out-of-sample bars is the bar to clear.
""",
    ),
    code(
        "wf-equity",
        """
oos = wf.equity
closes = bars["close"].loc[oos.index]
hold_oos = oos.iloc[0] * closes / closes.iloc[0]
fig, ax = plt.subplots(figsize=(10, 4))
ax.plot(oos.index, oos.to_numpy(), label="walk-forward (out-of-sample, stitched)")
ax.plot(hold_oos.index, hold_oos.to_numpy(), label="buy_and_hold (same bars)", alpha=0.7)
for boundary in wf.boundaries:
    ax.axvline(boundary, color="grey", linestyle="--", linewidth=0.8)
ax.set_yscale("log")
ax.set_ylabel("equity")
ax.set_title(f"{symbol}: stitched out-of-sample equity")
ax.legend()
plt.show()
""",
    ),
    md(
        "wf-tables-md",
        """
In-sample figures are optimistic by construction; the ratio OOS / IS says how much of the
in-sample edge survived. The stability table shows whether the chosen parameters stay in
one region (a low coefficient of variation) or jump around, which would mean the
optimiser is fitting noise. The deflated Sharpe ratio asks whether the out-of-sample
Sharpe ratio beats what the best of this many luck-only trials would show.
""",
    ),
    code(
        "wf-tables",
        """
table = wf.windows.copy()
table["test"] = [
    f"{a:%Y-%m-%d}..{b:%Y-%m-%d}"
    for a, b in zip(table["test_start"], table["test_end"], strict=True)
]
table["chosen"] = [
    ", ".join(f"{k}={p[k]}" for k in wf.config["varying_parameters"]) if p else "in cash"
    for p in table["params"]
]
columns = ["window", "test", "chosen", "is_metric", "oos_metric", "oos_is_ratio",
           "is_cagr", "oos_cagr", "oos_trades", "end_equity"]  # fmt: skip
print("In-sample vs out-of-sample Sharpe per window:")
print(table[columns].to_string(index=False, float_format=lambda x: f"{x:,.3f}"))
print()
print("Summary:")
for key, value in wf.summary.items():
    print(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
print()
print("Parameter stability across windows:")
print(wf.stability.to_string(index=False, float_format=lambda x: f"{x:,.3f}"))
print()
dsr = wf.deflated_sharpe
if dsr is None:
    print("deflated Sharpe ratio: not defined for this run (see the notes above)")
else:
    print(
        f"Deflated Sharpe ratio: {dsr.dsr:.4f} (per-bar OOS Sharpe {dsr.sharpe:.4f} vs "
        f"SR0 {dsr.sharpe_benchmark:.4f}, the expected best of N={dsr.n_trials} "
        f"luck-only trials; T={dsr.n_obs} returns, skew {dsr.skew:.2f}, "
        f"kurtosis {dsr.kurtosis:.2f})"
    )
""",
    ),
    md(
        "live-md",
        """
## The live Serve app

The paper-trading app runs the same engine as the backtests. Its HTTP API is what a
dashboard or a script outside the cluster uses (with the token); a deployment handle is
what code on the cluster uses, without HTTP or the token. Both answer from the same
Engine replica, so they agree on the state.
""",
    ),
    code(
        "live-http",
        """
if SERVE_URL is None:
    print("SERVE_URL is None: the live-app section is skipped")
else:
    import requests

    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {API_TOKEN}"
    base = SERVE_URL.rstrip("/") + "/api/v1"
    response = api.get(f"{base}/status", timeout=10)
    response.raise_for_status()
    live = response.json()
    keys = ["state", "step", "symbols", "last_bar_time", "equity", "cash", "paused"]
    print("GET /api/v1/status:", {key: live.get(key) for key in keys})
    response = api.get(f"{base}/equity", params={"max_points": 500}, timeout=10)
    response.raise_for_status()
    body = response.json()
    points = pd.DataFrame(body["points"], columns=["timestamp", "equity", "cash"])
    points["timestamp"] = pd.to_datetime(points["timestamp"])
    print(f"GET /api/v1/equity: {len(points)} points (of {body['total']})")
    if points.empty:
        print("no equity points yet: the engine has not stepped")
    else:
        fig, ax = plt.subplots(figsize=(10, 3.5))
        ax.plot(points["timestamp"], points["equity"])
        ax.set_ylabel("equity")
        ax.set_title(f"live app at {SERVE_URL}: equity (paper trading)")
        plt.show()
""",
    ),
    code(
        "live-handle",
        """
if SERVE_URL is None:
    print("SERVE_URL is None: the live-app section is skipped")
elif RAY_ADDRESS is None:
    print("deployment handles need this kernel attached to the app's cluster (RAY_ADDRESS)")
else:
    from ray import serve

    app = serve.status().applications[APP_NAME]
    deployments = {name: d.status.value for name, d in app.deployments.items()}
    print(f"application {APP_NAME}: {app.status.value}; deployments: {deployments}")
    engine = serve.get_deployment_handle("Engine", app_name=APP_NAME)
    # the kernel runs cells inside an event loop: await the response (.result() would block it)
    snapshot = await engine.status.remote()
    keys = ["state", "step", "symbols", "equity", "feed_exhausted"]
    print("Engine.status() through the handle:", {key: snapshot.get(key) for key in keys})
""",
    ),
    md(
        "shutdown-md",
        """
Disconnect from Ray: a local Ray started above stops with it; an attached cluster and the
Serve app keep running.
""",
    ),
    code("shutdown", "ray.shutdown()"),
]


# -- model_report.ipynb ----------------------------------------------------------------------------
MODEL_REPORT: list[Cell] = [
    md(
        "title",
        """
# Walk-forward report of a registry model

The registered weights were trained on some stretch of history, so scoring them on bars
that overlap it would flatter them. What is evaluated here is the model card's recipe
(features, labels, architecture, hyperparameters), retrained on each fold's training rows
only and scored on the fold's test rows, exactly as `n1v1 evaluate` does
(docs/ml/evaluation.md). No Ray is needed: each fold trains in this kernel.
""",
    ),
    parameters(
        "parameters",
        """
# Parameters (papermill: this cell is tagged "parameters").
MODEL_ROOT = "../var/models"  # registry directory (`make run` trains demo_mlp there)
MODEL_NAME = "demo_mlp"
VERSION = "promoted"  # "promoted", "latest" or vNNNN
DATASET = "coinbase_BTC-USD_1m"  # a bundled dataset or a CSV/Parquet path
N_FOLDS = 4
SMALL = False  # small inputs: fewer bars, 2 folds, 2 epochs, 3 rule strategies (the tests)
""",
    ),
    code(
        "recipe",
        """
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from n1v1.cli.evaluate import recipe_from_card, summary_table
from n1v1.config import Settings
from n1v1.data.market import load_market
from n1v1.ml.evaluation import RULE_CANDIDATES, walk_forward_evaluate
from n1v1.ml.registry import ModelRegistry

card = ModelRegistry(MODEL_ROOT).card(MODEL_NAME, VERSION)
spec = recipe_from_card(card, DATASET, epochs=2 if SMALL else None)
timeframe = (card.get("data") or {}).get("timeframe")
print(
    f"{MODEL_NAME} {card.get('version')}: {spec.model.kind}, {spec.labels.kind} labels, "
    f"horizon {spec.labels.horizon}, {len(card['feature_names'])} features, "
    f"trained on {timeframe or 'native'} bars; up to {spec.epochs} epochs per fold"
)
""",
    ),
    md(
        "evaluate-md",
        """
## Walk-forward evaluation

Each fold is train, validation, calibration and test in time order, with purge gaps of
the label horizon between them, so no label leaks prices from a later block. The
threshold is chosen on validation and the calibration fitted on its own block; the test
rows are scored once.
""",
    ),
    code(
        "evaluate",
        """
bars = load_market(DATASET, timeframe=timeframe)
n_folds, rules = N_FOLDS, RULE_CANDIDATES
if SMALL:
    bars, n_folds, rules = bars.iloc[-1500:], 2, ("sma_cross", "rsi", "donchian_breakout")
print(f"{DATASET}: {len(bars):,} bars, {n_folds} rolling folds")


def show_progress(event):
    if event["event"] == "fold_done":
        fold = event["result"]
        print(
            f"fold {fold.number}: test {fold.periods['test']['start']} .. "
            f"{fold.periods['test']['end']}, AUC {fold.metrics['uncalibrated']['auc']:.4f}"
        )


result = walk_forward_evaluate(
    bars,
    spec,
    Settings(),
    n_folds=n_folds,
    mode="rolling",
    rule_strategies=rules,
    progress=show_progress,
)
print()
print(summary_table(result))
""",
    ),
    md(
        "auc-md",
        """
## Ranking: AUC per fold

0.5 is a coin flip. An AUC that is above 0.5 in one fold and below in the next is not an
edge; a steady one, even a small one, might be.
""",
    ),
    code(
        "auc",
        """
folds = [f"fold {f.number}" for f in result.folds]
auc = pd.DataFrame(
    {
        kind: [f.metrics.get(kind, {}).get("auc", np.nan) for f in result.folds]
        for kind in ("uncalibrated", "calibrated")
    },
    index=folds,
)
ax = auc.plot.bar(figsize=(8, 3.5), rot=0)
ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="coin flip")
ax.set_ylim(0.0, 1.0)
ax.set_ylabel("ROC AUC (test rows)")
ax.set_title(f"{MODEL_NAME}: AUC per fold")
ax.legend()
plt.show()
""",
    ),
    md(
        "reliability-md",
        """
## Calibration: reliability diagram

A position size or a threshold read off a probability needs the probability to mean
what it says: points on the diagonal do. Marker size is the number of test rows in the
bin; calibration was fitted on rows the model never trained on.
""",
    ),
    code(
        "reliability",
        """
n = len(result.folds)
fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
for ax, fold in zip(axes[0], result.folds, strict=True):
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for kind, colour in (("uncalibrated", "tab:blue"), ("calibrated", "tab:orange")):
        bins = [b for b in fold.metrics.get(kind, {}).get("reliability", []) if b["count"]]
        if bins:
            ax.scatter(
                [b["mean_predicted"] for b in bins],
                [b["observed_frequency"] for b in bins],
                s=[10 + 200 * b["count"] / max(x["count"] for x in bins) for b in bins],
                color=colour, alpha=0.7, label=kind,
            )  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted P(long)")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"fold {fold.number}")
    ax.legend(loc="upper left")
fig.tight_layout()
plt.show()
""",
    ),
    md(
        "equity-md",
        """
## Trading the test bars

A good AUC is worth nothing if it does not pay the fees. In each fold `ml_signal` (this
fold's model, with its validation threshold) trades the test bars through the same
backtest engine and costs as buy-and-hold and the rule strategy that had the best
in-sample Sharpe ratio.
""",
    ),
    code(
        "equity",
        """
n = len(result.folds)
fig, axes = plt.subplots(n, 1, figsize=(10, 3 * n), squeeze=False)
for ax, fold in zip(axes[:, 0], result.folds, strict=True):
    for name, style in (("ml_signal", "-"), ("buy_and_hold", "-"), ("best_rule", ":")):
        curve = fold.equity.get(name)
        if curve is not None:
            rule = fold.economic[name]["strategy"] if name == "best_rule" else None
            label = f"best rule ({rule})" if rule else name
            ax.plot(curve.index, curve.to_numpy(), linestyle=style, label=label)
    test = fold.periods["test"]
    ax.set_title(f"fold {fold.number}: test {test['start'][:16]} .. {test['end'][:16]}")
    ax.set_ylabel("equity")
    ax.legend(loc="upper left")
fig.tight_layout()
plt.show()

shown = ("total_return", "sharpe", "max_drawdown", "n_trades")
economics = pd.DataFrame(
    {
        (f"fold {f.number}", name): {key: f.economic[name].get(key) for key in shown}
        for f in result.folds
        for name in f.economic
    }
).T
print(economics.to_string(float_format=lambda x: f"{x:,.4f}"))
""",
    ),
]


# -- writing ---------------------------------------------------------------------------------------
def build(cells: list[Cell]) -> NotebookNode:
    """A notebook without outputs, with stable cell ids (the tests address cells by id)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    seen: set[str] = set()
    for cell_id, kind, source in cells:
        if cell_id in seen:
            raise ValueError(f"cell id {cell_id!r} is used twice")
        seen.add(cell_id)
        text = source.strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell.id = cell_id
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


NOTEBOOKS = {"research.ipynb": RESEARCH, "model_report.ipynb": MODEL_REPORT}


def render(name: str) -> str:
    """The exact text of a generated notebook file."""
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main() -> int:
    for name in NOTEBOOKS:
        path = HERE / name
        path.write_text(render(name))
        print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
