"""The driver-side half of training, without Ray: the data a run trains on, and its model card.

`prepare_data` loads and windows the bars, assembles features and labels, splits them in time
order with a purge of one label horizon and fits the scaler on training rows only; `model_card`
records everything needed to reproduce or audit the model; `persistent_ml_paths` says where the
run may write.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import n1v1
from n1v1.config import MLSettings, Settings
from n1v1.data import DataError, infer_timeframe, load_market
from n1v1.locations import persistent_locations
from n1v1.ml.dataset import Dataset, assemble
from n1v1.ml.features import feature_hash
from n1v1.ml.metrics import THRESHOLD_RULE
from n1v1.ml.scaling import Standardizer
from n1v1.ml.spec import TrainSpec
from n1v1.ml.splits import train_val_split


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Scaled features (scaler fitted on training rows only), labels, and the row ranges
    [start, stop) of training and validation; `info` describes the bars for the card; `bars`
    are the bars the rows come from (the validation backtest trades them)."""

    bars: pd.DataFrame
    dataset: Dataset
    scaler: Standardizer
    X: np.ndarray
    train: tuple[int, int]
    val: tuple[int, int]
    info: dict[str, Any]


def prepare_data(spec: TrainSpec, settings: Settings) -> PreparedData:
    """Load, resample and window the bars, assemble features and labels, split in time order with
    a purge of `labels.horizon` rows, and fit the scaler on the training rows."""
    from n1v1.cli.common import format_duration

    timeframe = spec.timeframe or settings.data.timeframe
    bars = load_market(
        spec.data,
        gap_policy=settings.data.gap_policy,
        timeframe=timeframe,
        start=spec.start,
        end=spec.end,
    )
    try:
        dataset = assemble(bars, spec.features, spec.labels)
        split = train_val_split(len(dataset), spec.val_fraction, purge=spec.labels.horizon)
    except ValueError as exc:
        raise DataError(f"{spec.data}: {exc}", source=spec.data) from None
    first_label = 0 if spec.model.kind == "mlp" else spec.model.window - 1  # needs a full window
    train = (max(split.train.start, first_label), split.train.stop)
    val = (split.val.start, split.val.stop)
    counts = np.bincount(dataset.y[train[0] : train[1]], minlength=spec.labels.n_classes)
    if train[1] - train[0] < 2 or (counts == 0).any():
        raise DataError(
            f"{spec.data}: the {max(train[1] - train[0], 0)} training rows hold no example of "
            f"class(es) {np.flatnonzero(counts == 0).tolist()} (label threshold "
            f"{spec.labels.threshold:g} over {spec.labels.horizon} bars); use more data, a "
            "smaller model.window or lower labels.fee/margin",
            source=spec.data,
        )
    scaler = Standardizer().fit(dataset.X[split.train])
    spacing = timeframe or format_duration(infer_timeframe(bars).total_seconds()).replace(" ", "")
    info = {"symbol": bars.attrs.get("symbol"), "n_bars": len(bars), "timeframe": spacing}
    info["class_counts"] = counts.tolist()
    val_counts = np.bincount(dataset.y[val[0] : val[1]], minlength=spec.labels.n_classes)
    info["val_class_counts"] = val_counts.tolist()
    return PreparedData(bars, dataset, scaler, scaler.transform(dataset.X), train, val, info)


def persistent_ml_paths(
    ml: MLSettings, outputs: Mapping[str, Path | None] | None = None
) -> tuple[str, str]:
    """(storage, model_root): Ray Train's storage (a URI as is, a local directory made absolute,
    which Ray requires) and the registry directory, both persistent by the rule of
    `n1v1.locations` (refused, naming the setting, when a Ray job would write them into its
    temporary working dir). `outputs`: the command's own output files, checked in the same pass
    (`{"--json": path}`), so one error lists every location to fix."""
    where = persistent_locations(
        {"ml.storage_path": ml.storage_path, "ml.model_root": ml.model_root, **(outputs or {})},
        uris={"ml.storage_path"},
    )
    return str(where["ml.storage_path"]), str(where["ml.model_root"])


def model_card(
    spec: TrainSpec,
    settings: Settings,
    data: PreparedData,
    metrics: dict[str, Any],
    threshold: float,
    history: list[dict[str, Any]],
    run_name: str,
    storage: str,
    validation_backtest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card (docs/ml/training.md lists every field)."""
    index, (t0, t1), (v0, v1) = data.dataset.index, data.train, data.val
    hyper = {
        k: getattr(spec, k)
        for k in (
            "lr",
            "batch_size",
            "patience",
            "weight_decay",
            "seed",
            "class_weight",
            "val_fraction",
        )
    }
    hyper.update(epochs_max=spec.epochs, num_workers=settings.ml.num_workers, optimizer="AdamW")
    return {
        "name": spec.name,
        "model_spec": spec.model.model_dump(mode="json"),
        "feature_spec": spec.features.model_dump(mode="json"),
        "feature_names": list(data.dataset.feature_names),
        "feature_hash": feature_hash(spec.features),
        "label_spec": spec.labels.model_dump(mode="json"),
        "n_features": int(data.X.shape[1]),
        "n_classes": spec.labels.n_classes,
        "data": {
            "source": spec.data,
            "symbol": data.info["symbol"],
            "timeframe": data.info["timeframe"],
            "start": index[0].isoformat(),
            "end": index[-1].isoformat(),
            "n_rows": len(index),
            "n_bars": data.info["n_bars"],
        },
        "split": {
            "train": [index[t0].isoformat(), index[t1 - 1].isoformat()],
            "val": [index[v0].isoformat(), index[v1 - 1].isoformat()],
            "purge": spec.labels.horizon,
            "n_train": t1 - t0,
            "n_val": v1 - v0,
            "train_class_counts": data.info["class_counts"],
            "val_class_counts": data.info["val_class_counts"],
        },
        "hyperparameters": hyper,
        "metrics": metrics,
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "validation_backtest": validation_backtest,
        "history": [
            {k: finite_or_none(h[k]) for k in ("epoch", "train_loss", "val_loss", "val_auc")}
            for h in history
        ],
        "training_seconds": float(sum(h["epoch_seconds"] for h in history)),
        "code_version": code_version(),
        "run": {"name": run_name, "storage_path": storage},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def code_version() -> str:
    """n1v1's version, plus the git commit when the package runs from a checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(n1v1.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return n1v1.__version__
    commit = out.stdout.strip()
    return f"{n1v1.__version__}+git.{commit[:12]}" if commit else n1v1.__version__


def finite_or_none(value: Any) -> Any:
    """JSON has no NaN: an undefined metric (e.g. AUC with one class) is stored as null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
