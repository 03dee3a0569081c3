"""Training steps shared by the Ray Train loop (`n1v1.ml.train`) and the in-process trainer used
per walk-forward fold: batched row access, per-epoch seeding, one epoch, one validation pass.

No Ray here: evaluation trains folds in-process without starting a cluster.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from torch.utils.data import DataLoader, DistributedSampler

from n1v1.ml.metrics import macro_auc
from n1v1.ml.models import build_model
from n1v1.ml.splits import sequence_windows

EVAL_BATCH = 4096


class FitError(ValueError):
    """A fold or run could not be trained (e.g. no epoch had a finite validation loss)."""


class Rows(torch.utils.data.Dataset):
    """Rows [start, stop) as model inputs (the scaled row, or the window of `window` rows ending at
    it) with their labels, fetched a whole batch per call (`__getitems__`: no per-row Python)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, rows: tuple[int, int], window: int | None):
        self.inputs = X if window is None else sequence_windows(X, window)
        self.offset = 0 if window is None else window - 1
        self.y, (self.start, self.stop) = y, rows

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitems__(self, positions: Any) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.start + np.asarray(positions, dtype=np.int64)
        x = np.ascontiguousarray(self.inputs[idx - self.offset])  # a fresh, writable copy
        return torch.from_numpy(x), torch.from_numpy(self.y[idx])

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([position])
        return x[0], y[0]


def whole_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch  # __getitems__ already returns the batch tensors


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Every source of randomness of this worker for this epoch, from (seed, epoch, rank) only."""
    derived = int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])
    torch.manual_seed(derived)
    np.random.seed(derived)
    random.seed(derived)


def train_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    weight: torch.Tensor | None,
    device: torch.device,
) -> float:
    """One pass over this worker's shard; the mean batch loss over all workers' samples."""
    model.train()
    loss_sum, count = 0.0, 0
    for xb, yb in loader:
        optimizer.zero_grad(set_to_none=True)
        loss = functional.cross_entropy(model(xb), yb, weight=weight)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach().item() * len(yb)
        count += len(yb)
    totals = torch.tensor([loss_sum, count], dtype=torch.float64, device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(totals)
    return float(totals[0] / totals[1])


def val_pass(
    net: torch.nn.Module, rows: Rows, weight: torch.Tensor | None, device: torch.device
) -> tuple[float, np.ndarray]:
    """(mean cross-entropy, probabilities [n, classes]) over every row, in eval mode. The loss
    uses the training class weights, so early stopping watches the objective being trained."""
    net.eval()
    loss_sum, weight_sum, chunks = 0.0, 0.0, []
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_BATCH):
            xb, yb = rows.__getitems__(np.arange(start, min(start + EVAL_BATCH, len(rows))))
            xb, yb = xb.to(device), yb.to(device)
            logits = net(xb)
            loss_sum += float(functional.cross_entropy(logits, yb, weight=weight, reduction="sum"))
            weight_sum += float(weight[yb].sum()) if weight is not None else len(yb)
            chunks.append(torch.softmax(logits, dim=1).double().cpu().numpy())
    return loss_sum / weight_sum, np.concatenate(chunks)


def fit_in_process(
    spec: Any, X: np.ndarray, y: np.ndarray, train: slice, val: slice
) -> tuple[Any, dict[str, Any]]:
    """Train `spec.model` on scaled rows `train`, early-stopping on `val`, in this process.

    It drives the epoch step of `n1v1.ml.train` (`_Rows`, `_seed_epoch`, `_train_epoch`,
    `_val_pass`) with the sampler Ray Train would give a single worker, so a fold is trained as
    `n1v1 train` with num_workers=1 trains. That module also imports Ray (unused here: nothing is
    started); see docs/ml/evaluation.md. Returns (model in eval mode, training summary).
    """

    window = None if spec.model.kind == "mlp" else spec.model.window
    rows = (max(train.start, 0 if window is None else window - 1), train.stop)
    n_classes = spec.labels.n_classes
    weight = None
    if getattr(spec, "class_weight", "none") == "balanced":
        counts = np.bincount(y[rows[0] : rows[1]], minlength=n_classes).astype(np.float64)
        if (counts == 0).any():
            raise FitError(f"class_weight=balanced: a class is absent from rows {rows}")
        weight = torch.tensor(counts.sum() / (n_classes * counts), dtype=torch.float32)
    train_rows, val_rows = Rows(X, y, rows, window), Rows(X, y, (val.start, val.stop), window)
    net = build_model(spec.model, X.shape[1], n_classes, seed=spec.seed)
    optimizer = torch.optim.AdamW(net.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    sampler = DistributedSampler(train_rows, num_replicas=1, rank=0, shuffle=True, seed=spec.seed)
    loader = DataLoader(
        train_rows, batch_size=spec.batch_size, sampler=sampler, collate_fn=whole_batch
    )
    cpu = torch.device("cpu")
    best_loss, best_epoch, best_state, bad, history = math.inf, 0, None, 0, []
    started = time.perf_counter()
    for epoch in range(1, spec.epochs + 1):
        seed_epoch(spec.seed, epoch, 0)
        sampler.set_epoch(epoch)
        train_loss = train_epoch(net, loader, optimizer, weight, cpu)
        val_loss, proba = val_pass(net, val_rows, weight, cpu)
        val_auc = macro_auc(proba, y[val])
        history.append(
            {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_auc": val_auc}
        )
        if val_loss < best_loss:  # NaN never improves
            best_loss, best_epoch, bad = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= spec.patience:
                break
    if best_state is None:
        raise FitError(f"training rows {rows}: no epoch had a finite validation loss")
    net.load_state_dict(best_state)
    net.eval()
    best = history[best_epoch - 1]
    seconds = time.perf_counter() - started
    return net, {
        "rows": rows[1] - rows[0],
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "train_loss": best["train_loss"],
        "val_loss": best["val_loss"],
        "val_auc": best["val_auc"],
        "seconds": seconds,
        "samples_per_second": (rows[1] - rows[0]) * len(history) / max(seconds, 1e-9),
    }
