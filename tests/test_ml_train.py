"""Training on Ray Train: checkpoints every epoch, registration and load-back, resume after an
interruption (bit-identical to an uninterrupted run), early stopping, and the pure helpers (AUC,
threshold choice, purge and scaler fit) with hand-computed answers.

One local Ray cluster serves the whole module (`cluster`). Every Ray Train run costs ~20 s of
worker start-up (those tests are marked slow), so the runs are few and shared: `reference` (4
epochs, uninterrupted) is reused by the checkpoint, registry and resume tests. The runs that do not
depend on each other start together (`runs`): the reference, the interrupted run followed by its
resumption, and the early-stopping run; most of a run's start-up is waiting, so they overlap.
Training is deterministic whatever else runs (each worker computes alone, one thread per CPU it
holds), so the resumed run is still compared bit for bit with the reference.
RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=0.2 makes the controller collect each epoch's report every 0.2 s
instead of 2 s (timing only).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import ray
import torch

from n1v1.cluster import PREEMPTION_WATCHER_ENV
from n1v1.config import MLSettings, Settings, parse_settings
from n1v1.data import generate_bars
from n1v1.ml.inference import load_model
from n1v1.ml.metrics import choose_threshold, macro_auc
from n1v1.ml.models import build_model, read_state_dict
from n1v1.ml.prepare import persistent_ml_paths, prepare_data
from n1v1.ml.registry import ModelRegistry
from n1v1.ml.scaling import Standardizer
from n1v1.ml.spec import TrainSpec
from n1v1.ml.train import CHECKPOINT_STATE, TrainingError, run_training

HORIZON = 5
# fee 0 and margin 0: "long" means the close 5 bars later is higher, about half the rows
LABELS = {"horizon": HORIZON, "fee": 0.0, "margin": 0.0}
SPEC = {"epochs": 4, "batch_size": 256, "model": {"hidden": (16,)}, "labels": LABELS, "seed": 3}


# -- pure helpers (no Ray) -------------------------------------------------------------------------
def test_binary_auc_counts_ordered_pairs_with_ties_as_halves():
    # positives score 0.5 and 0.9, negatives 0.5 and 0.2. Pairs (pos, neg):
    # (0.5, 0.5) tie = 1/2, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1 -> 3.5 / 4 = 0.875
    p_long = np.array([0.5, 0.5, 0.2, 0.9])
    proba = np.column_stack([1 - p_long, p_long])
    assert macro_auc(proba, np.array([1, 0, 0, 1])) == pytest.approx(0.875)


def test_ternary_auc_is_the_mean_of_one_vs_rest_aucs():
    y = np.array([0, 1, 2, 0, 2])
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5], [0.1, 0.3, 0.6], [0.5, 0.1, 0.4]]
    )
    # class 0 (rows 0, 3) vs rest (1, 2, 4), scores .7 .1 vs .3 .2 .5: .7 beats all 3, .1 none
    #   -> 3/6 = 0.5
    # class 1 (row 1, .4) vs rest .2 .3 .3 .1: beats all 4 -> 4/4 = 1.0
    # class 2 (rows 2, 4: .5, .4) vs rest .1 .3 .6: .5 beats 2, .4 beats 2 -> 4/6 = 2/3
    assert macro_auc(proba, y) == pytest.approx((0.5 + 1.0 + 2 / 3) / 3)


def test_auc_is_undefined_when_validation_holds_one_class():
    proba = np.array([[0.4, 0.6], [0.7, 0.3]])
    assert math.isnan(macro_auc(proba, np.array([1, 1])))


def test_threshold_maximises_the_validation_net_return_of_the_rows_it_trades():
    p = np.array([0.9, 0.8, 0.6, 0.3, 0.2])
    fwd = np.array([0.010, -0.004, 0.006, 0.001, -0.010])  # forward returns of these rows
    cost = 0.002  # round-trip fee
    # net per row (r - cost): .008 -.006 .004 -.001 -.012
    # candidates are the midpoints .25 .45 .7 .85; trading the rows with p > t earns:
    #   t=.25: .008 - .006 + .004 - .001 = .005;  t=.45: .008 - .006 + .004 = .006
    #   t=.7 : .008 - .006 = .002;                t=.85: .008
    threshold, net = choose_threshold(np.column_stack([1 - p, p]), fwd, cost)
    assert threshold == pytest.approx(0.85)
    assert net == pytest.approx(0.008)


def test_a_model_without_an_edge_on_validation_never_trades():
    p = np.array([0.9, 0.6, 0.3])
    fwd = np.array([-0.001, 0.001, 0.002])  # every row nets below the 0.002 cost
    threshold, net = choose_threshold(np.column_stack([1 - p, p]), fwd, 0.002)
    assert (threshold, net) == (1.0, 0.0)


def test_ternary_threshold_adds_the_long_and_the_short_side():
    p_long = np.array([0.6, 0.1, 0.2])
    p_short = np.array([0.1, 0.7, 0.3])
    proba = np.column_stack([p_short, 1 - p_long - p_short, p_long])
    fwd = np.array([0.01, -0.02, 0.0])
    # longs net r - .001: .009 -.021 -.001; shorts net -r - .001: -.011 .019 -.001
    # candidates .15 .25 .45 .65: t=.45 trades long {0} (.009) and short {1} (.019) = .028;
    # t=.65 only short {1} = .019; t=.25: long {0} .009 + short {1, 2} .018 = .027
    threshold, net = choose_threshold(proba, fwd, 0.001)
    assert (threshold, net) == (pytest.approx(0.45), pytest.approx(0.028))


def test_storage_path_local_is_made_absolute_and_a_uri_is_kept(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    local = MLSettings(storage_path="ray_results", model_root="models")
    assert persistent_ml_paths(local) == (
        str(tmp_path.resolve() / "ray_results"),
        str(tmp_path.resolve() / "models"),
    )
    bucket = MLSettings(storage_path="s3://bucket/runs", model_root="/mnt/models")
    assert persistent_ml_paths(bucket) == ("s3://bucket/runs", "/mnt/models")


def test_train_spec_rejects_a_name_that_could_leave_the_registry():
    with pytest.raises(ValueError, match=re.escape("invalid model name '../x'")):
        TrainSpec(name="../x", data="d")


def test_prepare_data_splits_in_time_order_with_a_purge_and_scales_on_train_rows(data_file):
    spec = TrainSpec(name="m", data=str(data_file), **SPEC)
    data = prepare_data(spec, Settings())
    n = len(data.dataset)
    n_val = round(0.2 * n)  # val_fraction 0.2; purge = horizon = 5 rows
    assert data.train == (0, n - n_val - HORIZON)
    assert data.val == (n - n_val, n)
    train_rows = data.dataset.X[: data.train[1]].astype(np.float64)
    np.testing.assert_allclose(data.scaler.mean, train_rows.mean(axis=0))
    assert data.dataset.index.is_monotonic_increasing


# -- Ray Train -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    env = {
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        # as `ensure_ray` sets it for every private local Ray: nothing drains this one, and the
        # watcher is one more actor process per run
        PREEMPTION_WATCHER_ENV: "0",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    # address="local": a private Ray, never another cluster that happens to run on the machine
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "syn_1m.csv"
    generate_bars(3000, seed=1).to_csv(path)
    return path


@pytest.fixture(scope="module")
def noise_file(tmp_path_factory) -> Path:
    """Pure noise: i.i.d. log returns, so no feature can predict the next 5 bars."""
    rng = np.random.default_rng(7)
    n = 2500
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0.0, 5e-4, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0.0, 5e-4, n))
    index = pd.date_range("2024-01-01", periods=n, freq="1min", tz="UTC", name="timestamp")
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": rng.uniform(1, 9, n)},
        index=index,
    )
    path = tmp_path_factory.mktemp("noise") / "noise_1m.csv"
    frame.to_csv(path)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ml")


def _settings(root: Path, **ml: Any) -> Settings:
    return parse_settings(
        {"ml": {"model_root": str(root / "models"), "storage_path": str(root / "ray"), **ml}}
    )


def _train(spec: TrainSpec, settings: Settings, **kwargs: Any) -> tuple[dict, list[dict]]:
    events: list[dict] = []
    return run_training(spec, settings, progress=events.append, **kwargs), events


def _epochs(events: list[dict]) -> list[int]:
    return [e["epoch"] for e in events if e["event"] == "epoch"]


def _checkpoint_epochs(run_dir: Path) -> set[int]:
    return {int(p.name.rsplit("_", 1)[1]) for p in run_dir.glob("checkpoint_epoch_*")}


@dataclass(frozen=True)
class Interrupted:
    """The run that fails at epoch 3, what it left, and the same run name trained again."""

    error: TrainingError | None  # what the failing run raised (None: it did not fail)
    checkpoints: set[int]  # the epochs checkpointed when it failed
    resumed: dict
    events: list[dict]


@dataclass(frozen=True)
class Runs:
    reference: Future[tuple[dict, list[dict]]]
    interrupted: Future[Interrupted]
    noise: Future[tuple[dict, list[dict]]]
    spec: TrainSpec
    settings: Settings


def _interrupt_then_resume(spec: TrainSpec, settings: Settings, run_dir: Path) -> Interrupted:
    error = None
    try:
        _train(spec, settings, run_name="interrupted", register=False, fail_at_epoch=3)
    except TrainingError as exc:
        error = exc
    checkpoints = _checkpoint_epochs(run_dir)
    resumed, events = _train(spec, settings, run_name="interrupted", register=False)
    return Interrupted(error, checkpoints, resumed, events)


@pytest.fixture(scope="module")
def runs(cluster, data_file, noise_file, root) -> Iterator[Runs]:
    """The module's Ray Train runs, started at once, each in a thread of its own (the cluster's 4
    CPUs hold their 1 + 1 + 2 workers)."""
    spec = TrainSpec(name="syn_mlp", data=str(data_file), checkpoints_to_keep=2, **SPEC)
    settings = _settings(root)
    noise = TrainSpec(
        name="noise",
        data=str(noise_file),
        epochs=30,
        patience=2,
        lr=0.01,
        batch_size=128,
        model={"hidden": (64, 64), "dropout": 0.0},
        labels=LABELS,
    )
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="train") as pool:
        yield Runs(
            reference=pool.submit(_train, spec, settings, run_name="reference"),
            interrupted=pool.submit(
                _interrupt_then_resume, spec, settings, root / "ray" / "interrupted"
            ),
            noise=pool.submit(_train, noise, _settings(root, num_workers=2), register=False),
            spec=spec,
            settings=settings,
        )


@pytest.fixture(scope="module")
def reference(runs: Runs) -> tuple[dict, list[dict], TrainSpec, Settings]:
    result, events = runs.reference.result()
    return result, events, runs.spec, runs.settings


@pytest.mark.slow
def test_every_epoch_is_reported_and_checkpointed_and_the_best_are_kept(reference, root):
    result, events, _, _ = reference
    assert _epochs(events) == [1, 2, 3, 4]  # live progress, one event per reported epoch
    history = result["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    for h in history:
        assert {"train_loss", "val_loss", "val_auc"} <= set(h)
        assert 0.0 <= h["val_auc"] <= 1.0
    # checkpoints_to_keep=2 keeps the two lowest validation losses plus the latest epoch
    by_loss = sorted(history, key=lambda h: h["val_loss"])
    expected = {by_loss[0]["epoch"], by_loss[1]["epoch"], 4}
    run_dir = root / "ray" / "reference"
    assert _checkpoint_epochs(run_dir) == expected
    for epoch in expected:
        directory = run_dir / f"checkpoint_epoch_{epoch:04d}"
        assert (directory / "model.pt").is_file()
        state = torch.load(directory / CHECKPOINT_STATE, weights_only=True)
        assert state["epoch"] == epoch
        assert {"optimizer", "best_val_loss", "bad_epochs", "history"} <= set(state)
    best = by_loss[0]["epoch"]
    assert result["checkpoint_path"] == str(run_dir / f"checkpoint_epoch_{best:04d}")
    assert result["metrics"]["best_epoch"] == best
    assert result["metrics"]["val_auc"] == by_loss[0]["val_auc"]
    assert result["resumed_from_epoch"] is None


@pytest.mark.slow
def test_the_registered_model_predicts_exactly_like_the_best_checkpoint(reference, data_file):
    result, _, spec, settings = reference
    registry = ModelRegistry(settings.ml.model_root)
    loaded = load_model(registry, "syn_mlp", result["version"])
    card = loaded.card
    assert card["metrics"]["val_auc"] == result["metrics"]["val_auc"]
    assert card["split"]["purge"] == HORIZON and card["threshold"] == result["threshold"]
    assert card["hyperparameters"]["seed"] == 3 and card["label_spec"]["horizon"] == HORIZON

    # expected: the best checkpoint's weights and a scaler fitted here on the training rows
    data = prepare_data(spec, settings)
    raw = data.dataset.X
    scaler = Standardizer().fit(raw[: data.train[1]])
    net = build_model(spec.model, raw.shape[1], 2, seed=0)
    net.load_state_dict(read_state_dict(Path(result["checkpoint_path"]) / "model.pt"))
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(scaler.transform(raw)))
    expected = torch.softmax(logits, dim=1).numpy().astype(np.float64)
    np.testing.assert_array_equal(loaded.predict_proba(raw), expected)

    # the validation backtest (one session: the synthetic bars have no hole). Buy-and-hold's
    # target is +1 from the first validation bar, filled at the next bar's open (next_open) with
    # all the cash and the 0.1 % fee: return = close[last] / (open[first + 1] * 1.001) - 1
    bars = data.bars
    first, last = bars.index.get_indexer(data.dataset.index[[data.val[0], data.val[1] - 1]])
    hold = bars["close"].iloc[last] / (bars["open"].iloc[first + 1] * 1.001) - 1.0
    backtest = card["validation_backtest"]
    assert (backtest["sessions"], backtest["bars"], backtest["fee"]) == (1, last - first + 1, 0.001)
    assert card["metrics"]["val_buy_and_hold_return"] == pytest.approx(hold, rel=1e-9)
    assert backtest["buy_and_hold"]["n_trades"] == 1
    assert card["metrics"]["val_return"] == backtest["strategy"]["total_return"]
    assert (
        card["split"]["val_class_counts"]
        == np.bincount(data.dataset.y[data.val[0] : data.val[1]], minlength=2).tolist()
    )


@pytest.mark.slow
def test_an_interrupted_run_resumes_at_the_failed_epoch_and_ends_like_an_uninterrupted_one(
    reference, runs
):
    ref = reference[0]
    interrupted = runs.interrupted.result()
    assert isinstance(interrupted.error, TrainingError), "the run with a failure must fail"
    assert re.search("injected failure at epoch 3", str(interrupted.error))
    assert interrupted.checkpoints == {1, 2}  # epoch 3 died before its report

    resumed, events = interrupted.resumed, interrupted.events
    assert resumed["resumed_from_epoch"] == 3
    assert resumed["epochs_trained"] == [3, 4]
    assert _epochs(events) == [3, 4]
    assert [h["val_loss"] for h in resumed["history"]] == [h["val_loss"] for h in ref["history"]]
    final = read_state_dict(Path(resumed["latest_checkpoint_path"]) / "model.pt")
    expected = read_state_dict(Path(ref["latest_checkpoint_path"]) / "model.pt")
    assert final.keys() == expected.keys()
    for key in final:
        assert torch.equal(final[key], expected[key]), key


@pytest.mark.slow
def test_a_run_name_reused_for_another_spec_is_refused(reference):
    _, _, spec, settings = reference
    changed = spec.model_copy(update={"lr": 0.01})
    with pytest.raises(TrainingError, match="written for other data or hyperparameters"):
        _train(changed, settings, run_name="reference", register=False)


@pytest.mark.slow
def test_early_stopping_ends_training_on_noise_with_two_workers(runs):
    result, events = runs.noise.result()
    hyper = result["card"]["hyperparameters"]  # the spec of `runs`
    assert (hyper["epochs_max"], hyper["patience"], hyper["num_workers"]) == (30, 2, 2)
    metrics, history = result["metrics"], result["history"]
    assert metrics["stopped_early"]
    # the rule: stop after `patience` epochs in a row without a lower validation loss
    assert metrics["epochs_run"] == metrics["best_epoch"] + 2 < 30
    best = history[metrics["best_epoch"] - 1]["val_loss"]
    assert all(h["val_loss"] >= best for h in history[metrics["best_epoch"] :])
    assert _epochs(events) == list(range(1, metrics["epochs_run"] + 1))
