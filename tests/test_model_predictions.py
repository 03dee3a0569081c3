"""ml_signal slots in a live session ask a Predictor, and its answers are journaled engine inputs
(n1v1/live/predictions.py). No Ray here: the predictor is `LocalPredictor` (the replicas' own code
path, in this process) or, to make the model slow, wrong or failing on purpose, a Predictor that
wraps it. tests/test_serve_app.py runs the same through the Model deployment's replicas."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from session_worker import GatedFeed, market, run_to, run_to_end, wait_until
from sqlalchemy import delete
from test_ml_signal import BARS, FEATURES, register_tiny

from n1v1.config import Settings
from n1v1.live.config import StrategySlot
from n1v1.live.predictions import (
    FuturePredictions,
    LocalPredictor,
    ModelAnswer,
    PredictionRecord,
    PredictionRequest,
    ShadowScore,
    answers_for,
    row_hash,
)
from n1v1.live.replay import PacedReplay
from n1v1.live.session import TradingSession
from n1v1.ml.features import build_features
from n1v1.ml.inference import load_model
from n1v1.ml.registry import ModelRegistry
from n1v1.store import StoreReader, create_store
from n1v1.store import schema as t

SLOTS = [
    StrategySlot(name="sma_cross", params={"fast": 5, "slow": 20}),
    # below the tiny model's typical P(long), so its answers move the target both ways
    StrategySlot(name="ml_signal", id="ml", params={"model": "tiny", "threshold": 0.47}),
]
STEPS = 160


def settings(root: Path) -> Settings:
    return Settings.model_validate(
        {"risk": {"fraction": 0.4, "stop_loss_pct": 0.01}, "ml": {"model_root": str(root)}}
    )


class Wrapped:
    """A Predictor around LocalPredictor that answers late, raises, or claims other features
    for chosen calls (numbered from 0), so each failure path is taken on a known bar."""

    def __init__(self, inner: LocalPredictor, mode: str, calls: set[int], delay: float = 1.0):
        self.inner, self.mode, self.calls, self.delay = inner, mode, calls, delay
        self.n = 0

    def submit(self, requests: Sequence[PredictionRequest]) -> Any:
        call, self.n = self.n, self.n + 1
        if call not in self.calls:
            return self.inner.submit(requests)
        if self.mode == "slow":
            delay, n = self.delay, len(requests)

            class Late:
                """Answers after `delay`: the budget runs out first."""

                def wait(self, timeout_s: float) -> list[Any]:
                    time.sleep(min(timeout_s, delay))
                    if timeout_s >= delay:
                        raise AssertionError("the budget should be shorter than the delay")
                    return [TimeoutError(f"no answer within {timeout_s:g} s")] * n

                def cancel(self) -> None:
                    pass

            return Late()
        if self.mode == "raise":
            from concurrent.futures import Future

            failed: Future[list[ModelAnswer]] = Future()
            failed.set_exception(RuntimeError("forward pass exploded"))
            return FuturePredictions([(list(range(len(requests))), failed)], len(requests))
        answers = self.inner.submit(requests).wait(10)
        other = [
            ModelAnswer(a.model, a.version, "0" * 16, a.threshold, a.probabilities)  # type: ignore[union-attr]
            for a in answers
        ]
        from concurrent.futures import Future

        done: Future[list[ModelAnswer]] = Future()
        done.set_result(other)
        return FuturePredictions([(list(range(len(requests))), done)], len(requests))


def run_session(store: Any, root: Path, **kwargs: Any) -> TradingSession:
    feed = PacedReplay(market(STEPS), 0)
    session = TradingSession(settings(root), list(SLOTS), feed, store, window=100, **kwargs)
    session.start()
    run_to_end(session, feed, STEPS)
    return session


def rebuild(store: Any, root: Path) -> TradingSession:
    """A new session over the same store (the rebuild), its feed already played out."""
    session = TradingSession(
        settings(root), list(SLOTS), PacedReplay(market(STEPS), 0), store, window=100
    )
    session.start()
    wait_until(lambda: session.state in ("replay_finished", "failed"), "the rebuild")
    assert session.state == "replay_finished", session.failure
    return session


def trade_records(store: Any) -> list[tuple[int, dict[str, Any]]]:
    logged = StoreReader(store).predictions()
    return [(s, r) for s, rows in sorted(logged.items()) for r in rows if r["role"] == "trade"]


def test_every_answer_is_journaled_and_a_rebuild_without_any_model_reproduces_the_fills(
    tmp_path: Path,
) -> None:
    root = tmp_path / "models"
    version = register_tiny(root)
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    session = run_session(store, root)
    trades, cash = session.trades_page(None, 1000, 0), session.snapshot["cash"]
    assert session.snapshot["strategies"][1]["model"]["version"] == version
    session.stop()
    records = trade_records(store)
    # one record per step and symbol, in feed order; ok once the features are ready
    assert len(records) == STEPS * 2
    statuses = [r["status"] for _, r in records]
    assert set(statuses) == {"not_ready", "ok"}
    first_ok = statuses.index("ok")
    assert all(s == "ok" for s in statuses[first_ok:])
    ok = [r for _, r in records if r["status"] == "ok"]
    assert {r["version"] for r in ok} == {version} and all(len(r["row_hash"]) == 16 for r in ok)
    assert len({tuple(r["probabilities"]) for r in ok}) > 10  # they vary with the bars
    # the slot's signals moved with its answers: it traded
    assert any(s.strategy == "ml" for s in StoreReader(store).signals())

    # The logged answers are the inputs: with the registry gone the rebuild needs no model.
    shutil.rmtree(root)
    again = rebuild(store, root)
    try:
        assert again.trades_page(None, 1000, 0) == trades
        assert again.snapshot["cash"] == cash
    finally:
        again.stop()


def test_the_logged_answer_is_what_the_model_says_for_the_logged_rows(tmp_path: Path) -> None:
    """The record's probabilities are the model's for the rows whose hash it carries: the rows
    `MLSignal.live_rows` computes from the trailing window equal the backtest's features."""
    root = tmp_path / "models"
    version = register_tiny(root)
    loaded = load_model(ModelRegistry(root), "tiny", version)
    features = build_features(BARS, FEATURES).to_numpy()
    ready = np.flatnonzero(np.isfinite(features).all(axis=1))
    rows = features[ready[-3:]]
    (answer,) = answers_for(loaded, [rows[-1:]])
    expected = loaded.predict_proba(rows[-1:])[0]
    np.testing.assert_allclose(answer.probabilities, expected, rtol=0, atol=1e-12)
    assert answer.version == version and answer.feature_hash == loaded.card["feature_hash"]
    assert row_hash(rows) == row_hash(rows.copy()) != row_hash(rows + 1e-12)


@pytest.mark.parametrize("kind", ["gru", "tcn"])
def test_a_sequence_models_window_never_spans_two_symbols(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "models"
    version = register_tiny(root, kind=kind)
    loaded = load_model(ModelRegistry(root), "tiny", version)
    features = build_features(BARS, FEATURES).to_numpy()
    ready = features[np.isfinite(features).all(axis=1)]
    a, b = ready[10:14], ready[50:54]  # window 4 each
    answers = answers_for(loaded, [a, b])
    for rows, answer in zip((a, b), answers, strict=True):
        np.testing.assert_allclose(
            answer.probabilities, loaded.predict_proba(rows)[-1], rtol=0, atol=1e-12
        )


@pytest.mark.parametrize(("fallback", "mode"), [("hold", "slow"), ("flat", "raise")])
def test_a_late_or_failing_model_holds_or_goes_flat_and_the_rebuild_agrees(
    tmp_path: Path, fallback: str, mode: str
) -> None:
    root = tmp_path / "models"
    register_tiny(root)
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    inner = LocalPredictor(str(root))
    broken = set(range(40, 160, 3))  # every third call from the 40th
    predictor = Wrapped(inner, mode, broken)
    seen: list[PredictionRecord] = []
    session = run_session(
        store,
        root,
        predictor=predictor,
        prediction_timeout_s=0.05,
        on_prediction_failure=fallback,
        on_predictions=seen.extend,
    )
    trades = session.trades_page(None, 1000, 0)
    session.stop()
    records = trade_records(store)
    failed = [(s, r) for s, r in records if r["status"] not in ("ok", "not_ready")]
    expected_status = "timeout" if mode == "slow" else "error"
    assert failed and {r["status"] for _, r in failed} == {expected_status}
    assert {r["fallback"] for _, r in failed} == {fallback}
    assert sum(r.status == expected_status for r in seen) == len(failed)  # counted (metrics hook)
    if mode == "raise":
        assert "forward pass exploded" in failed[0][1]["detail"]
    # the slot's target on a failed bar: its previous one (hold) or 0 (flat)
    signals = StoreReader(store).signals()
    ml_changes = {(s.timestamp, s.symbol): s.target for s in signals if s.strategy == "ml"}
    assert ml_changes, "the slot never traded: the test shows nothing"
    failed_steps = {s for s, _ in failed}
    if fallback == "flat":
        assert all(
            target == 0
            for (ts, symbol), target in ml_changes.items()
            if step_of(store, ts) in failed_steps
        )
    else:  # a held target is no change: no signal on a failed bar
        assert not any(step_of(store, ts) in failed_steps for ts, _ in ml_changes)
    again = rebuild(store, root)
    try:
        assert again.trades_page(None, 1000, 0) == trades
    finally:
        again.stop()


def step_of(store: Any, ts: Any) -> int:
    for step, bar_ts, _ in StoreReader(store).bar_log():
        if bar_ts == ts:
            return step
    raise KeyError(ts)


def test_a_slow_model_does_not_delay_the_step_beyond_its_budget(tmp_path: Path) -> None:
    root = tmp_path / "models"
    register_tiny(root)
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    predictor = Wrapped(LocalPredictor(str(root)), "slow", set(range(30, 40)), delay=5.0)
    feed = GatedFeed(market(STEPS))
    latencies: list[float] = []
    session = TradingSession(
        settings(root),
        list(SLOTS),
        feed,
        store,
        window=100,
        predictor=predictor,
        prediction_timeout_s=0.2,
        on_step=lambda seconds, _engine: latencies.append(seconds),
    )
    session.start()
    try:
        wait_until(lambda: session.state == "running", "the lease")
        started = time.monotonic()
        run_to(session, feed, 80)
        elapsed = time.monotonic() - started
    finally:
        session.stop()
    # ten late calls cost their budget (0.2 s) each, not the model's 5 s
    assert elapsed < 10 * 0.2 + 5.0
    assert max(latencies) < 1.5


def test_an_answer_for_other_features_is_refused_as_a_mismatch(tmp_path: Path) -> None:
    root = tmp_path / "models"
    register_tiny(root)
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    predictor = Wrapped(LocalPredictor(str(root)), "mismatch", {50, 51})
    session = run_session(store, root, predictor=predictor)
    session.stop()
    failed = [r for _, r in trade_records(store) if r["status"] == "mismatch"]
    assert len(failed) == 4  # two calls, two symbols each
    assert "reads features 0000000000000000" in failed[0]["detail"]
    assert failed[0]["probabilities"] is None  # a refused answer is never traded on


def test_shadow_score_by_hand() -> None:
    score = ShadowScore()
    # bar 1: traded long, shadow flat; bar 2 closes up: traded right, shadow wrong
    score.observe("BTC/USD", 100.0, 1, 0)
    score.observe("BTC/USD", 101.0, 1, 1)  # agree; bar 3 closes down: both wrong
    score.observe("BTC/USD", 99.0, None, 0)  # the traded call failed: not compared
    summary = score.summary()
    assert summary["compared"] == 2 and summary["agreement"] == 0.5
    assert summary["scored"] == 2
    assert summary["hit_rate"] == {"traded": 0.5, "shadow": 0.0}


def test_a_shadow_version_is_scored_on_the_same_rows_and_never_traded(tmp_path: Path) -> None:
    root = tmp_path / "models"
    register_tiny(root)
    register_tiny(root, threshold=0.5)  # v0002, the candidate (same weights: agrees always)
    ModelRegistry(root).promote("tiny", "v0001", force=True)  # the traded one stays v0001
    slots = [
        SLOTS[0],
        SLOTS[1].model_copy(update={"params": {**SLOTS[1].params, "shadow": "v0002"}}),
    ]
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    feed = PacedReplay(market(STEPS), 0)
    session = TradingSession(settings(root), slots, feed, store, window=100)
    session.start()
    run_to_end(session, feed, STEPS)
    shadow = session.snapshot["strategies"][1]["model"]["shadow"]
    session.stop()
    logged = StoreReader(store).predictions()
    rows = [r for step in logged.values() for r in step]
    trade = [r for r in rows if r["role"] == "trade" and r["status"] == "ok"]
    shadows = [r for r in rows if r["role"] == "shadow"]
    assert len(shadows) == len(trade) and {r["version"] for r in shadows} == {"v0002"}
    assert [r["row_hash"] for r in shadows] == [r["row_hash"] for r in trade]
    assert shadow["version"] == "v0002" and shadow["compared"] == len(trade)
    assert shadow["agreement"] == 1.0  # the same weights, the same threshold: always agree
    assert {r["version"] for r in trade} == {"v0001"}  # the shadow never trades


def test_a_recovery_from_a_snapshot_keeps_the_ml_slots_state_and_needs_no_model(
    tmp_path: Path,
) -> None:
    """Snapshots every 40 steps: the recovered session restores the slot's held targets, version
    and shadow score from the newest snapshot, replays the logged answers after it, and ends where
    the original did, with the registry gone."""
    root = tmp_path / "models"
    register_tiny(root)
    register_tiny(root)  # v0002 (the same weights): the shadow
    ModelRegistry(root).promote("tiny", "v0001", force=True)
    shadowed = {**SLOTS[1].params, "shadow": "v0002"}
    slots = [SLOTS[0], SLOTS[1].model_copy(update={"params": shadowed})]
    store = create_store(f"sqlite:///{tmp_path / 'a.db'}")
    broken = Wrapped(LocalPredictor(str(root)), "raise", set(range(60, 150, 7)))

    def session(feed: Any, **kwargs: Any) -> TradingSession:
        return TradingSession(
            settings(root), slots, feed, store, window=100, snapshot_every=40, **kwargs
        )

    feed = GatedFeed(market(STEPS))
    first = session(feed, predictor=broken)  # some error records: held targets matter
    first.start()
    try:
        wait_until(lambda: first.state == "running", "the lease")
        run_to(first, feed, 130)  # the newest snapshot is at step 120: 10 steps to replay
        model, trades = first.snapshot["strategies"][1]["model"], first.trades_page(None, 1000, 0)
        cash = first.snapshot["cash"]
    finally:
        first.stop()
    # as if it had crashed after step 130: without the snapshot its clean stop wrote
    with store.transaction() as conn:
        conn.execute(delete(t.snapshots).where(t.snapshots.c.step == 130))
    assert model["shadow"]["compared"] > 0
    shutil.rmtree(root)
    feed = GatedFeed(market(STEPS))
    second = session(feed)
    second.start()
    try:
        wait_until(lambda: second.state in ("running", "failed"), "the recovery")
        assert second.state == "running", second.failure
        recovery = second.snapshot["recovery"]
        assert recovery["from_snapshot_step"] == 120 and recovery["replayed_steps"] == 10
        assert second.snapshot["strategies"][1]["model"] == model
        assert second.trades_page(None, 1000, 0) == trades
        assert second.snapshot["cash"] == cash
    finally:
        second.stop()
