"""ML speed and quality, measured in one run: Ray Train throughput, one-core inference, and the
MLP's walk-forward quality next to scikit-learn's LogisticRegression on the same folds.

    python bench/ml.py [--quick]

1. Training throughput (samples/s) of `n1v1.ml.train.run_training` with 1 and 2 Ray Train workers
   on the same data and spec (per-epoch figures reported by the workers, and the wall time of the
   whole call including Ray start-up of the run).
2. Inference rows/s of `LoadedModel.predict_proba` (scaler + MLP forward + softmax) for batch sizes
   1, 16, 256 and 4,096 with `torch.set_num_threads(1)`; target: >= 100,000 rows/s batched.
3. Walk-forward quality: `walk_forward_evaluate` (the MLP retrained per fold, in-process) and a
   LogisticRegression fitted on the same training rows with the same scaler, scored on the same
   test rows: AUC, log loss, Brier per fold, and training time.

Data: seeded synthetic 1-minute bars (`n1v1.data.synthetic.generate_bars`), because the bundled
real files are too short. Everything printed is measured here; BENCHMARKS.md copies it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# One thread per process everywhere (torch here and in each Ray worker, BLAS for scikit-learn), so
# every figure is per core and the 2-worker run really uses two cores, not four threads on two.
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine as bench_machine  # noqa: E402

from n1v1.config import Settings  # noqa: E402
from n1v1.data.synthetic import generate_bars  # noqa: E402
from n1v1.ml.dataset import assemble  # noqa: E402
from n1v1.ml.evaluation import RULE_CANDIDATES, walk_forward_evaluate  # noqa: E402
from n1v1.ml.labels import LabelSpec  # noqa: E402
from n1v1.ml.metrics import brier_score, log_loss, roc_auc  # noqa: E402
from n1v1.ml.models import ModelSpec  # noqa: E402
from n1v1.ml.scaling import Standardizer  # noqa: E402
from n1v1.ml.splits import walk_forward_folds  # noqa: E402

BATCH_SIZES = (1, 16, 256, 4096)


def machine_info() -> dict[str, str]:
    import torch

    return bench_machine.machine_info(
        "numpy",
        "pandas",
        "torch",
        "ray",
        "sklearn",
        extra={"torch_threads (in this process)": str(torch.get_num_threads())},
    )


def write_bars(n: int, directory: Path) -> tuple[pd.DataFrame, str]:
    bars = generate_bars(n, timeframe="1m", seed=0)
    path = directory / "bench_bars.parquet"
    bars.rename_axis("timestamp").to_parquet(path)
    return bars, str(path)


# --------------------------------------------------------------------------- 1. Ray Train
def training_throughput(spec: Any, workers: int, tmp: Path) -> dict[str, Any]:
    from n1v1.ml.train import run_training

    settings = Settings.model_validate(
        {
            "ml": {
                "num_workers": workers,
                "storage_path": str(tmp / "ray_results"),
                "model_root": str(tmp / "models"),
            }
        }
    )
    started = time.perf_counter()
    run_name = f"bench-{workers}w-b{spec.batch_size}"
    out = run_training(spec, settings, run_name=run_name, register=True, progress=None)
    wall = time.perf_counter() - started
    history = out["history"]
    rates = [h["samples_per_second"] for h in history]
    return {
        "workers": workers,
        "train_rows": out["card"]["split"]["n_train"],
        "epochs": len(history),
        "samples_per_s_first_epoch": rates[0],
        "samples_per_s_median_later_epochs": float(np.median(rates[1:]))
        if len(rates) > 1
        else None,
        "epoch_seconds": [round(h["epoch_seconds"], 3) for h in history],
        "wall_seconds_run_training": wall,
        "version": out["version"],
    }


# --------------------------------------------------------------------------- 2. inference
def inference_speed(model_root: Path, name: str, rows: int) -> list[dict[str, Any]]:
    import torch

    from n1v1.ml.inference import load_model
    from n1v1.ml.registry import ModelRegistry

    torch.set_num_threads(1)
    loaded = load_model(ModelRegistry(model_root), name, "latest")
    rng = np.random.default_rng(0)
    mean, scale = loaded.scaler.mean, loaded.scaler.scale
    X = mean + scale * rng.standard_normal((rows, loaded.n_features))  # raw-feature-like rows
    out = []
    for batch in BATCH_SIZES:
        n = min(rows, max(2_000, batch * 400))  # batch 1: 2,000 single-row calls
        loaded.batch_size = batch
        loaded.predict_proba(X[: min(n, 2 * batch)])  # warm up
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            loaded.predict_proba(X[:n])
            best = min(best, time.perf_counter() - t0)
        out.append({"batch_size": batch, "rows": n, "seconds": best, "rows_per_s": n / best})
    return out


# --------------------------------------------------------------------------- 3. quality
def quality(bars: pd.DataFrame, spec: Any, n_folds: int) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    result = walk_forward_evaluate(bars, spec, Settings(), n_folds=n_folds, mode="rolling")
    evaluate_seconds = time.perf_counter() - t0
    ds = assemble(bars, spec.features, spec.labels)
    folds = walk_forward_folds(
        len(ds),
        n_folds=n_folds,
        test_size=result.config["test_size"],
        purge=spec.labels.horizon,
        mode="rolling",
        val_fraction=spec.val_fraction,
        calib_fraction=result.config["calib_fraction"],
    )
    print(
        f"walk_forward_evaluate total {evaluate_seconds:.1f} s (training, calibration, "
        f"{len(RULE_CANDIDATES)} rule backtests on train+val and 3 on test per fold); "
        f"{result.config['test_size']:,} test "
        "rows per fold"
    )
    head = "fold  train  test  event  |  AUC mlp / logreg  | log loss mlp / logreg / base"
    print(head + "  | Brier mlp / logreg / base  | train s mlp (epochs) / logreg")
    for fold, mlp in zip(folds, result.folds, strict=True):
        scaler = Standardizer().fit(ds.X[fold.train])
        t1 = time.perf_counter()
        lr = LogisticRegression(max_iter=1000).fit(
            scaler.transform(ds.X[fold.train]), ds.y[fold.train]
        )
        lr_seconds = time.perf_counter() - t1
        p = lr.predict_proba(scaler.transform(ds.X[fold.test]))[:, 1]
        y = ds.y[fold.test]
        m, base = mlp.metrics["uncalibrated"], mlp.metrics["base_rate"]
        print(
            f"{fold.number:>4} {fold.train.stop - fold.train.start:>6,} "
            f"{fold.test.stop - fold.test.start:>5,} {y.mean():6.3f}  |  {m['auc']:.4f} / "
            f"{roc_auc(y, p):.4f}  |  {m['log_loss']:.4f} / {log_loss(y, p):.4f} / "
            f"{base['log_loss']:.4f}  |  {m['brier']:.4f} / {brier_score(y, p):.4f} / "
            f"{base['brier']:.4f}  |  {mlp.training['seconds']:.2f} "
            f"({mlp.training['epochs_run']}) / {lr_seconds:.2f}"
        )
    print("calibrated MLP (Platt on each fold's calib block): " + "; ".join(
        f"fold {f.number} AUC {f.metrics['calibrated']['auc']:.4f} log loss "
        f"{f.metrics['calibrated']['log_loss']:.4f} Brier {f.metrics['calibrated']['brier']:.4f}"
        for f in result.folds
    ))  # fmt: skip
    print("economic test on the same test bars (total return, closed trades, fees paid):")
    for f in result.folds:
        parts = []
        for key in ("ml_signal", "buy_and_hold", "best_rule"):
            e = f.economic[key]
            parts.append(
                f"{e['strategy']} {100 * e['total_return']:+.2f}% ({e['n_trades']} trades, "
                f"fees {e['fees_paid']:,.0f})"
            )
        print(f"  fold {f.number}: threshold {f.threshold:.3f}; " + "; ".join(parts))
    return {"evaluate_seconds": evaluate_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--train-bars", type=int, default=200_000, help="bars for the Ray Train runs")
    ap.add_argument("--epochs", type=int, default=3, help="epochs of each Ray Train run")
    ap.add_argument("--infer-rows", type=int, default=1_000_000)
    ap.add_argument("--quality-bars", type=int, default=200_000)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, not a benchmark"
    )
    a = ap.parse_args()
    if a.quick:
        a.train_bars, a.epochs, a.infer_rows, a.quality_bars, a.folds = (
            20_000,
            2,
            100_000,
            20_000,
            2,
        )

    import ray
    import torch

    from n1v1.ml.spec import TrainSpec

    info = machine_info()
    print("## machine\n" + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- command: python bench/ml.py {' '.join(sys.argv[1:])}".rstrip())

    labels = LabelSpec(horizon=15)
    model = ModelSpec(kind="mlp", hidden=(64, 32))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        _, path = write_bars(a.train_bars, tmp)
        ray.init(
            num_cpus=len(os.sched_getaffinity(0)), include_dashboard=False, log_to_driver=False
        )
        print(f"\n## 1. Ray Train throughput, {a.train_bars:,} bars, mlp (64, 32)")
        for batch in (512, 4096):
            spec = TrainSpec(
                name="bench-mlp", data=path, labels=labels, model=model, epochs=a.epochs,
                patience=a.epochs, batch_size=batch,
            )  # fmt: skip
            for workers in (1, 2):
                run = training_throughput(spec, workers, tmp)
                print(
                    f"batch {batch:>4}, {workers} worker(s): {run['train_rows']:,} train rows, "
                    f"epoch 1 {run['samples_per_s_first_epoch']:,.0f} samples/s, later epochs "
                    f"(median) {run['samples_per_s_median_later_epochs']:,.0f} samples/s; "
                    f"epoch seconds {run['epoch_seconds']}; run_training wall "
                    f"{run['wall_seconds_run_training']:.1f} s"
                )
        ray.shutdown()

        torch.set_num_threads(1)
        print(f"\n## 2. inference, one core (torch threads = {torch.get_num_threads()})")
        for row in inference_speed(tmp / "models", "bench-mlp", a.infer_rows):
            print(
                f"batch {row['batch_size']:>5}: {row['rows']:>9,} rows in {row['seconds']:.4f} s "
                f"= {row['rows_per_s']:>12,.0f} rows/s"
            )

    qbars = generate_bars(a.quality_bars, timeframe="1m", seed=1)
    qspec = TrainSpec(
        name="bench-mlp", data="synthetic", labels=labels, model=model, epochs=20, patience=3,
        batch_size=512,
    )  # fmt: skip
    print(
        f"\n## 3. walk-forward quality, {a.quality_bars:,} synthetic 1m bars (seed 1), "
        f"{a.folds} rolling folds, one core"
    )
    quality(qbars, qspec, a.folds)


if __name__ == "__main__":
    main()
