"""Train a model with Ray Train and register it: `run_training(spec, settings)`.

The driver loads the bars, assembles features and labels, splits them in time order (train, a purge
gap of `labels.horizon` rows, validation; never shuffled across time), fits the scaler on training
rows only and puts the scaled arrays into the object store once. Each Ray Train worker runs
`train_loop_per_worker`: it trains its DistributedSampler shard (DDP over gloo on CPU when
`num_workers > 1`), evaluates train loss, validation loss and validation AUC every epoch and reports
them with a checkpoint every epoch. After `fit` the driver takes the best epoch (lowest validation
loss), chooses the decision threshold on validation and registers the model with its card.

Why these choices (docs/ml/training.md has the long form):
- Resume is Ray's: re-running with the same run name and storage path hands the worker the latest
  checkpoint, which holds everything the loop needs (weights, optimizer, epoch, best loss, patience
  counter, history), read back with `torch.load(weights_only=True)`.
- Reproducible and exactly resumable: before every epoch each worker reseeds torch, numpy and
  `random` from SeedSequence([seed, epoch, rank]) and the sampler shuffles with (seed, epoch). The
  random state of any epoch is therefore a function of the checkpointed epoch number, for every
  worker, so an interrupted run continues bit-for-bit like one that never stopped (storing one
  worker's Mersenne state would not restore the others).
- The only module besides n1v1/serve that imports Ray (tests/test_architecture.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
from ray.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    LoggingConfig,
    RunConfig,
    ScalingConfig,
)
from ray.train.torch import TorchTrainer, get_device, prepare_data_loader, prepare_model
from ray.util.queue import Empty, Queue
from torch.utils.data import DataLoader, DistributedSampler

from n1v1.config import Settings
from n1v1.ml.economics import validation_backtest
from n1v1.ml.fit import Rows, seed_epoch, train_epoch, val_pass, whole_batch
from n1v1.ml.metrics import choose_threshold, macro_auc
from n1v1.ml.models import build_model, read_state_dict, save_state_dict
from n1v1.ml.prepare import (
    PreparedData,
    finite_or_none,
    model_card,
    persistent_ml_paths,
    prepare_data,
)
from n1v1.ml.registry import ModelRegistry, validate_name
from n1v1.ml.spec import TrainSpec
from n1v1.ml.train_metrics import TrainingMetrics

__all__ = [
    "TrainSpec",
    "TrainingError",
    "choose_threshold",
    "macro_auc",
    "persistent_ml_paths",
    "prepare_data",
    "run_training",
    "train_loop_per_worker",
]

CHECKPOINT_MODEL = "model.pt"  # the network's state_dict
CHECKPOINT_STATE = "train_state.pt"  # optimizer, epoch, best loss, patience counter, history
EVAL_BATCH = 4096
Progress = Callable[[dict[str, Any]], None] | None


class TrainingError(RuntimeError):
    """Training could not produce a model: a worker failed, no epoch had a finite validation loss,
    or a run name was reused for a different spec. The message says how to resume or fix it."""


# -- the Ray Train worker --------------------------------------------------------------------------
def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """The Ray Train loop (one call per worker). `config`: spec (TrainSpec JSON), arrays (object
    ref of {"X", "y"}), train_rows/val_rows, class_weights, fingerprint, fail_at_epoch (test hook:
    raise after training that epoch, unless this attempt started there)."""
    _quiet_report_logs()
    spec = TrainSpec.model_validate(config["spec"])
    arrays = ray.get(config["arrays"])
    X, y = arrays["X"], arrays["y"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.use_deterministic_algorithms(True, warn_only=True)
    window = None if spec.model.kind == "mlp" else spec.model.window
    net = build_model(spec.model, X.shape[1], spec.labels.n_classes, seed=spec.seed)
    state: dict[str, Any] = {
        "epoch": 0,
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
    }
    optimizer_state = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        state, optimizer_state = _restore(checkpoint, net)
    first_epoch = state["epoch"] + 1
    model = prepare_model(net)  # DDP over gloo (CPU) / nccl (GPU) when world > 1
    device = get_device()
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)  # after prepare_model: moved to the device
    weights = config["class_weights"]
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32).to(device)
    train_rows = Rows(X, y, config["train_rows"], window)
    val_rows = Rows(X, y, config["val_rows"], window)
    sampler = DistributedSampler(
        train_rows, num_replicas=world, rank=rank, shuffle=True, seed=spec.seed
    )
    loader = prepare_data_loader(  # keeps our sampler; moves batches to the device
        DataLoader(train_rows, batch_size=spec.batch_size, sampler=sampler, collate_fn=whole_batch)
    )
    for epoch in range(first_epoch, spec.epochs + 1):
        if state["bad_epochs"] >= spec.patience:  # resumed after early stopping: nothing to do
            break
        seed_epoch(spec.seed, epoch, rank)
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        train_loss = train_epoch(model, loader, optimizer, weight, device)
        seconds = time.perf_counter() - started
        if config.get("fail_at_epoch") == epoch and first_epoch < epoch:
            raise RuntimeError(f"injected failure at epoch {epoch} (test hook fail_at_epoch)")
        val_loss, proba = val_pass(net, val_rows, weight, device)
        if val_loss < state["best_val_loss"]:  # NaN never improves
            state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        stopped_early = state["bad_epochs"] >= spec.patience
        state["epoch"] = epoch
        metrics = {
            "epoch": epoch,
            "epochs_max": spec.epochs,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_auc": macro_auc(proba, val_rows.y[val_rows.start : val_rows.stop]),
            "best_val_loss": state["best_val_loss"],
            "best_epoch": state["best_epoch"],
            "bad_epochs": state["bad_epochs"],
            "stopped_early": stopped_early,
            "epoch_seconds": seconds,
            "samples_per_second": len(train_rows) / seconds if seconds > 0 else math.nan,
        }
        state["history"].append(metrics)
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                save_state_dict(net, Path(tmp) / CHECKPOINT_MODEL)
                torch.save(
                    {
                        **state,
                        "fingerprint": config["fingerprint"],
                        "optimizer": optimizer.state_dict(),
                    },
                    Path(tmp) / CHECKPOINT_STATE,
                )
                saved = Checkpoint.from_directory(tmp)
            ray.train.report(
                metrics, checkpoint=saved, checkpoint_dir_name=f"checkpoint_epoch_{epoch:04d}"
            )
    return {"first_epoch": first_epoch, "history": state["history"]}


def _quiet_report_logs() -> None:
    """Ray Train names a few loggers by file path instead of `ray.train.*`, so RunConfig's
    LoggingConfig level misses them; one logs every report at INFO ("Reporting training result
    ..." with the whole metrics dict), which would interleave with the CLI's epoch lines.
    Warnings and errors of those loggers still show."""
    package_dir = os.path.join(os.path.dirname(ray.train.__file__), "")
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith(package_dir):
            logging.getLogger(name).setLevel(logging.WARNING)


def _restore(checkpoint: Checkpoint, net: torch.nn.Module) -> tuple[dict[str, Any], dict[str, Any]]:
    """Weights into `net`; (loop state, optimizer state) from the checkpoint (weights_only)."""
    with checkpoint.as_directory() as directory:
        net.load_state_dict(read_state_dict(Path(directory) / CHECKPOINT_MODEL))
        saved = torch.load(
            Path(directory) / CHECKPOINT_STATE, weights_only=True, map_location="cpu"
        )
    saved.pop("fingerprint", None)  # checked by the driver before the run (`_check_resumable`)
    return saved, saved.pop("optimizer")


# -- the driver ------------------------------------------------------------------------------------
class _ProgressRelay(ray.train.UserCallback):
    """Runs in the Ray Train controller: forwards rank 0's metrics of every report to the driver."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Checkpoint | None
    ) -> None:
        self.queue.put({"event": "epoch", **metrics[0]})


def run_training(
    spec: TrainSpec,
    settings: Settings,
    *,
    run_name: str | None = None,
    register: bool = True,
    progress: Progress = None,
    fail_at_epoch: int | None = None,
    max_failures: int = 0,
    data: PreparedData | None = None,
) -> dict[str, Any]:
    """Train `spec` on Ray Train (initialised by the caller, or auto-started by Ray), take the
    best epoch, choose the threshold and register the model (unless `register=False`).

    `run_name` (default spec.name) names the run directory under settings.ml.storage_path; a run
    that has checkpoints there resumes from the latest. `progress` gets dicts with "event" set to
    "start", "epoch" (live, as each epoch is reported) and "done" (`n1v1.cli.ml` prints them).
    `max_failures`: worker failures Ray recovers from (from the latest checkpoint); `fail_at_epoch`
    is a test hook (see `train_loop_per_worker`); `data`: the caller's own `prepare_data(spec,
    settings)` (the CLI runs it first, so bad data fails before Ray starts). Returns version,
    metrics, threshold, checkpoint_path (best epoch), resumed_from_epoch (the first epoch this call
    trained when it continued a run, else None), epochs_trained, history, card.

    Every run is counted in the training metrics (`n1v1.ml.train_metrics`): its epochs and
    losses as they are reported, and its outcome, `failed` when this raises.
    """
    tracked = TrainingMetrics(spec.name)

    def tee(event: dict[str, Any]) -> None:
        tracked.on_epoch(event)
        _emit(progress, event)

    try:
        result = _run_training(
            spec, settings, run_name, register, tee, fail_at_epoch, max_failures, data
        )
    except Exception:
        tracked.finished("failed")
        raise
    tracked.finished("succeeded")
    return result


def _run_training(
    spec: TrainSpec,
    settings: Settings,
    run_name: str | None,
    register: bool,
    progress: Progress,
    fail_at_epoch: int | None,
    max_failures: int,
    data: PreparedData | None,
) -> dict[str, Any]:
    run_name = validate_name(run_name or spec.name)
    storage, model_root = persistent_ml_paths(settings.ml)  # before any work: nothing to lose
    data = prepare_data(spec, settings) if data is None else data
    counts = np.asarray(data.info["class_counts"], dtype=np.float64)
    weights = None  # "balanced": n / (k count_c), so every class carries the same total weight
    if spec.class_weight == "balanced":
        weights = (counts.sum() / (counts.size * counts)).tolist()
    fingerprint = _fingerprint(spec, data)
    _check_resumable(storage, run_name, fingerprint)
    _emit(
        progress,
        {
            "event": "start",
            "name": spec.name,
            "run_name": run_name,
            "storage_path": storage,
            "rows": len(data.dataset),
            "train_rows": data.train,
            "val_rows": data.val,
            "purge": spec.labels.horizon,
            "n_features": data.X.shape[1],
            "n_classes": spec.labels.n_classes,
            "num_workers": settings.ml.num_workers,
        },
    )
    config = {
        "spec": spec.model_dump(mode="json"),
        "arrays": ray.put({"X": data.X, "y": data.dataset.y}),  # once; workers read zero-copy
        "train_rows": data.train,
        "val_rows": data.val,
        "class_weights": weights,
        "fingerprint": fingerprint,
        "fail_at_epoch": fail_at_epoch,
    }
    queue = Queue(actor_options={"num_cpus": 0})
    keep = CheckpointConfig(
        num_to_keep=spec.checkpoints_to_keep,
        checkpoint_score_attribute="val_loss",
        checkpoint_score_order="min",
    )
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=settings.ml.num_workers, use_gpu=settings.ml.use_gpu
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            checkpoint_config=keep,
            failure_config=FailureConfig(max_failures=max_failures),
            callbacks=[_ProgressRelay(queue)],
            # Ray Train's INFO lines ("Reporting training result ...", one per checkpoint) would
            # interleave with our epoch lines; warnings and errors still reach the console.
            logging_config=LoggingConfig(log_level="WARNING"),
        ),
    )
    try:
        result = _fit(trainer, queue, progress)
    except ray.train.TrainingFailedError as exc:
        raise TrainingError(
            f"run {run_name!r} failed: {_last_line(exc)}\ncheckpoints so far: {storage}/"
            f"{run_name} (running the same run name again resumes from the latest)"
        ) from exc
    outcome = result.return_value or {}
    history, first_epoch = outcome.get("history", []), int(outcome.get("first_epoch", 1))
    checkpoint, best = _best(result, run_name)
    with checkpoint.as_directory() as directory:
        state_dict = read_state_dict(Path(directory) / CHECKPOINT_MODEL)
    net = build_model(spec.model, data.X.shape[1], spec.labels.n_classes, seed=spec.seed)
    net.load_state_dict(state_dict)
    threshold, net_return = _validation_threshold(spec, data, net, weights)
    economic = validation_backtest(spec, data, net, threshold, settings)
    metrics = {
        "train_loss": best["train_loss"],
        "val_loss": best["val_loss"],
        "val_auc": finite_or_none(best["val_auc"]),
        "best_epoch": int(best["epoch"]),
        "epochs_run": len(history),
        "val_net_return_at_threshold": net_return,
        "val_return": economic["strategy"]["total_return"],
        "val_buy_and_hold_return": economic["buy_and_hold"]["total_return"],
        "stopped_early": bool(history and history[-1]["stopped_early"]),
    }
    card = model_card(
        spec, settings, data, metrics, threshold, history, run_name, storage, economic
    )
    version = None
    if register:
        version = ModelRegistry(model_root).register(
            spec.name, state_dict=state_dict, scaler=data.scaler.to_dict(), card=card
        )
    _emit(
        progress,
        {
            "event": "done",
            "name": spec.name,
            "version": version,
            "metrics": metrics,
            "threshold": threshold,
            "validation_backtest": economic,
            "horizon": spec.labels.horizon,
        },
    )
    return {
        "version": version,
        "name": spec.name,
        "run_name": run_name,
        "metrics": metrics,
        "threshold": threshold,
        "checkpoint_path": checkpoint.path,
        "latest_checkpoint_path": result.checkpoint.path if result.checkpoint else None,
        "storage_path": storage,
        "resumed_from_epoch": first_epoch if first_epoch > 1 else None,
        "epochs_trained": [h["epoch"] for h in history if h["epoch"] >= first_epoch],
        "history": history,
        "samples_per_second": _mean([h["samples_per_second"] for h in history]),
        "card": card,
    }


def _validation_threshold(
    spec: TrainSpec, data: PreparedData, net: torch.nn.Module, weights: list[float] | None
) -> tuple[float, float]:
    """`choose_threshold` on the validation probabilities of the best epoch's network."""
    window = None if spec.model.kind == "mlp" else spec.model.window
    rows = Rows(data.X, data.dataset.y, data.val, window)
    weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    _, proba = val_pass(net, rows, weight, torch.device("cpu"))
    forward = data.dataset.forward_return[rows.start : rows.stop]
    return choose_threshold(proba, forward, 2.0 * spec.labels.fee)


def _fit(trainer: TorchTrainer, queue: Queue, progress: Progress) -> Any:
    """`trainer.fit()` in a thread while this thread hands each epoch's metrics to `progress`."""
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:  # re-raised in the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=fit, name="n1v1-train-fit", daemon=True)
    thread.start()
    try:
        while True:
            alive = thread.is_alive()  # read BEFORE draining: reports precede fit's return
            try:
                item = queue.get(timeout=0.5)
            except Empty:
                if not alive:
                    break
                continue
            _emit(progress, item)
        thread.join()
    finally:
        queue.shutdown()
    if "error" in box:
        raise box["error"]
    return box["result"]


def _best(result: Any, run_name: str) -> tuple[Checkpoint, dict[str, Any]]:
    """The kept checkpoint with the lowest validation loss (earliest epoch on ties). Ray keeps the
    `checkpoints_to_keep` best by val loss plus the latest, so the best epoch is always there."""
    kept = [(c, m) for c, m in (result.best_checkpoints or []) if math.isfinite(m["val_loss"])]
    if not kept:
        raise TrainingError(f"run {run_name!r}: no epoch produced a finite validation loss")
    return min(kept, key=lambda cm: (cm[1]["val_loss"], cm[1]["epoch"]))


def _fingerprint(spec: TrainSpec, data: PreparedData) -> str:
    """What a checkpoint must match to be resumed: everything but name, epochs, patience, keep."""
    kept = spec.model_dump(
        mode="json", exclude={"name", "epochs", "patience", "checkpoints_to_keep"}
    )
    payload = {"spec": kept, "rows": len(data.dataset), "train": data.train, "val": data.val}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _check_resumable(storage: str, run_name: str, fingerprint: str) -> None:
    """Refuse, before any worker starts, to resume a run whose latest checkpoint was trained on
    other data or hyperparameters (a silent mix of two specs in one model)."""
    try:
        latest = ray.train.Result.from_path(f"{storage.rstrip('/')}/{run_name}").checkpoint
    except RuntimeError:  # no run directory or no snapshot yet: a fresh start
        return
    if latest is None:
        return
    with latest.as_directory() as directory:
        state = torch.load(
            Path(directory) / CHECKPOINT_STATE, weights_only=True, map_location="cpu"
        )
    if state.get("fingerprint") != fingerprint:
        raise TrainingError(
            f"run {run_name!r}: its latest checkpoint ({latest.path}, epoch {state.get('epoch')})"
            " was written for other data or hyperparameters; use another run name (--run-name) "
            "or storage path, or restore the original spec to resume"
        )


def _emit(progress: Progress, event: dict[str, Any]) -> None:
    if progress is not None:
        progress(event)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__
