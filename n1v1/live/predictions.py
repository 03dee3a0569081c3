"""`ml_signal` live: features here, the forward pass on a Predictor, each answer an engine input.

A live session does not run its models itself. Each bar, every `ml_signal` slot computes its
feature rows from the trailing window (`MLSignal.live_rows`, the same features and readiness as a
backtest), the session sends them all at once to a `Predictor` (on Ray Serve: the Model
deployment's replicas, one batched call per model id; elsewhere `LocalPredictor`, the same
`PromotedModel` the replicas use, in a thread), computes the other strategies while it waits, and
then hands each slot a `PredictionRecord`: what the model answered (version, probabilities and the
threshold it applies), or why there is no answer (not ready, timeout, error, mismatch).

The records are inputs of the engine, like the bars: the session writes them in the bar's step
transaction, and a rebuild replays the logged records instead of asking a model, so it reproduces
the stored fills exactly whatever the registry holds by then (no version pinning). The target is a
pure function of the record: `ok` -> the threshold rule; `not_ready` -> flat; a failure -> the
slot's previous target (`hold`) or flat (`flat`), as the record's `fallback` says.

Promotions: a slot asks for its model by name (`model`, the promoted version) unless it names a
version. The replicas swap to a newly promoted version between batches and answer with it; when
the answer's feature hash equals the rows' (the usual retrain), the new version trades at once,
else the answer is refused as `mismatch` and the slot computes the new version's features from
the next bar. Either way the record, the status and a metric show the version in use.

Shadow mode (`shadow` parameter, a version or "latest"): the candidate is scored on the same rows,
logged (role `shadow`) and never traded; `ShadowScore` counts how often it agrees with the traded
version and how often each was right about the next bar's direction.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from n1v1.live.history import BarHistory
from n1v1.strategies.ml_signal import MLSignal

Status = Literal["ok", "not_ready", "timeout", "error", "mismatch"]
Fallback = Literal["hold", "flat"]


@dataclass(frozen=True)
class PredictionRequest:
    slot: str
    symbol: str
    model_id: str  # "name" (its promoted version) or "name@vNNNN"
    rows: np.ndarray  # [window, n_features]
    feature_hash: str | None  # of the card the rows were computed for
    role: str = "trade"  # "trade" | "shadow"

    @property
    def row_hash(self) -> str:
        return row_hash(self.rows)


@dataclass(frozen=True)
class ModelAnswer:
    """One request's answer: the probabilities of its last row, and what produced them."""

    model: str
    version: str
    feature_hash: str | None
    threshold: float
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class PredictionRecord:
    """A slot's model input for one symbol at one step, as the journal stores it."""

    slot: str
    symbol: str
    role: str
    status: Status
    model: str
    version: str | None = None
    row_hash: str | None = None
    probabilities: tuple[float, ...] | None = None
    threshold: float | None = None
    short_threshold: float | None = None
    fallback: Fallback = "hold"
    detail: str = ""
    latency_ms: float | None = None  # informational only: never read by a decision

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["probabilities"] = None if self.probabilities is None else list(self.probabilities)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PredictionRecord:
        data = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        probs = data.get("probabilities")
        data["probabilities"] = None if probs is None else tuple(float(p) for p in probs)
        return cls(**data)


def row_hash(rows: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of the rows' float64 bytes: the same features, the same
    hash, on any machine with IEEE doubles."""
    data = np.ascontiguousarray(rows, dtype="<f8").tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class PendingPredictions(Protocol):
    def wait(self, timeout_s: float) -> list[ModelAnswer | BaseException]:
        """One answer (or the exception that stands for it, TimeoutError included) per request,
        in request order, returning after at most `timeout_s` seconds."""
        ...

    def cancel(self) -> None:
        """Give up on every answer not read yet (the step failed before waiting for them)."""
        ...


class Predictor(Protocol):
    def submit(self, requests: Sequence[PredictionRequest]) -> PendingPredictions: ...


class GroupedAnswers(ABC):
    """Answers arriving per group of requests (one call per model id), all within one budget: a
    group that has not answered when the budget is spent is a timeout for each of its requests
    (and is cancelled), a group whose call failed is that failure for each. Subclasses say how
    to wait for one group's answers and how to give up on it."""

    def __init__(self, groups: list[tuple[list[int], Any]], n: int) -> None:
        self.groups, self.n = groups, n

    @abstractmethod
    def _answers(self, handle: Any, n: int, remaining_s: float) -> list[Any]:
        """The group's `n` answers, waiting at most `remaining_s` (TimeoutError past it)."""

    @abstractmethod
    def _cancel(self, handle: Any) -> None:
        """Give up on a group that did not answer in time."""

    def cancel(self) -> None:
        for _, handle in self.groups:
            self._cancel(handle)

    def wait(self, timeout_s: float) -> list[ModelAnswer | BaseException]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        out: list[ModelAnswer | BaseException] = [TimeoutError("no answer")] * self.n
        for members, handle in self.groups:
            try:
                remaining = max(0.0, deadline - time.monotonic())
                answers = self._answers(handle, len(members), remaining)
            except TimeoutError:
                self._cancel(handle)
                answers = [TimeoutError(f"no answer within {timeout_s:g} s")] * len(members)
            except Exception as err:  # the model failed, a replica died: an input, not a crash
                answers = [err] * len(members)
            for i, answer in zip(members, answers, strict=True):
                out[i] = answer
        return out


class FuturePredictions(GroupedAnswers):
    """Answers arriving on `concurrent.futures` futures, one per group of requests."""

    def _answers(self, handle: Any, n: int, remaining_s: float) -> list[Any]:
        future: Future[list[ModelAnswer]] = handle
        return future.result(timeout=remaining_s)

    def _cancel(self, handle: Any) -> None:
        """Nothing: the computation in this process runs to its end, its late answer unread."""


def group_by_model(requests: Sequence[PredictionRequest]) -> dict[str, list[int]]:
    """Request indices per model id: one call per model id and bar."""
    groups: dict[str, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(request.model_id, []).append(i)
    return groups


class LocalPredictor:
    """The models in this process, through the same `PromotedModel` the replicas hold (it swaps to
    a newly promoted version). For sessions without Ray Serve: tests, benchmarks, notebooks."""

    def __init__(self, model_root: str, refresh_s: float = 2.0) -> None:
        self.model_root, self.refresh_s = model_root, refresh_s
        self._models: dict[str, Any] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="n1v1-predict")
        self._lock = threading.Lock()

    def _model(self, model_id: str) -> Any:
        from n1v1.ml.registry import ModelRegistry
        from n1v1.ml.serving import PromotedModel, split_model_id

        with self._lock:
            if model_id not in self._models:
                name, version = split_model_id(model_id)
                registry = ModelRegistry(self.model_root)
                self._models[model_id] = PromotedModel(
                    registry, name, self.refresh_s, version=version
                )
            return self._models[model_id]

    def _answer(self, model_id: str, sets: list[np.ndarray]) -> list[ModelAnswer]:
        loaded = self._model(model_id).current()
        return answers_for(loaded, sets)

    def submit(self, requests: Sequence[PredictionRequest]) -> PendingPredictions:
        groups = []
        for model_id, members in group_by_model(requests).items():
            sets = [requests[i].rows for i in members]
            groups.append((members, self._pool.submit(self._answer, model_id, sets)))
        return FuturePredictions(groups, len(requests))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def answers_for(loaded: Any, sets: Sequence[np.ndarray]) -> list[ModelAnswer]:
    """Last-row probabilities of each set of rows, from a LoadedModel: MLP rows of all sets in
    one forward pass; a sequence model's sets each on their own (a window never spans two)."""
    if loaded.kind == "mlp":
        stacked = np.concatenate([np.asarray(s, dtype=np.float64)[-1:] for s in sets])
        probs = loaded.predict_proba(stacked)
    else:
        probs = np.stack([loaded.predict_proba(np.asarray(s, dtype=np.float64))[-1] for s in sets])
    feature_hash = loaded.card.get("feature_hash")
    return [
        ModelAnswer(
            loaded.name, loaded.version, feature_hash, loaded.threshold, tuple(map(float, p))
        )
        for p in probs
    ]


@dataclass
class ShadowScore:
    """Live evidence on a candidate version: agreement with the traded one, and each one's hit
    rate on the direction of the next close (a prediction is scored when that bar arrives)."""

    version: str | None = None
    compared: int = 0
    agreed: int = 0
    scored: int = 0
    hits: dict[str, int] = field(default_factory=lambda: {"traded": 0, "shadow": 0})
    pending: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    def observe(self, symbol: str, close: float, traded: int | None, shadow: int | None) -> None:
        """Score the previous bar's calls against this close, then remember this bar's."""
        previous = self.pending.pop(symbol, None)
        if previous is not None:
            last_close, traded_call, shadow_call = previous
            up = 1 if close > last_close else 0
            self.scored += 1
            self.hits["traded"] += int((traded_call > 0) == bool(up))
            self.hits["shadow"] += int((shadow_call > 0) == bool(up))
        if traded is not None and shadow is not None:
            self.compared += 1
            self.agreed += int(traded == shadow)
            self.pending[symbol] = (close, traded, shadow)

    def summary(self) -> dict[str, Any]:
        def rate(n: int, d: int) -> float | None:
            return n / d if d else None

        return {
            "version": self.version,
            "compared": self.compared,
            "agreement": rate(self.agreed, self.compared),
            "scored": self.scored,
            "hit_rate": {k: rate(v, self.scored) for k, v in self.hits.items()},
        }


class ModelTargets:
    """A SignalSource for an `ml_signal` slot whose model runs elsewhere (module docstring)."""

    def __init__(
        self,
        strategy: MLSignal,
        history: BarHistory,
        allow_short: bool,
        name: str,
        fallback: Fallback = "hold",
    ) -> None:
        strategy.use_card_only()
        self.strategy = strategy
        self.history = history
        self.allow_short = allow_short
        self.name = name
        self.fallback = fallback
        self._records: dict[str, tuple[int, PredictionRecord]] = {}
        self._shadow_records: dict[str, PredictionRecord] = {}
        self._answered: dict[str, tuple[int, int]] = {}
        self.last_target: dict[str, int] = {}
        self.version_in_use: str | None = None
        self.since_step: int | None = None
        self.shadow = ShadowScore() if strategy.params.shadow else None
        self.on_switch: Callable[[str, str | None, str], None] | None = None

    @property
    def model(self) -> str:
        return self.strategy.params.model

    def carry_over(self, old: ModelTargets) -> None:
        """Keep what a new-parameters copy of this slot must not forget: the targets a failure
        holds, the version in use (and its card), the shadow's score and this bar's records."""
        self.last_target = dict(old.last_target)
        self._records, self._answered = dict(old._records), dict(old._answered)
        self.version_in_use, self.since_step = old.version_in_use, old.since_step
        self.on_switch = old.on_switch
        if self.shadow is not None and old.shadow is not None:
            self.shadow = old.shadow
        if old.version_in_use is not None and self.strategy.params.version == "promoted":
            self._read_features_of(old.version_in_use)

    def model_id(self) -> str:
        version = self.strategy.params.version
        if version == "promoted":
            return self.model
        return f"{self.model}@{self.strategy.model_card().version}"  # "latest" resolved once

    # -- live: what to ask -------------------------------------------------------------------------
    def requests(self, symbol: str) -> tuple[list[PredictionRequest], PredictionRecord | None]:
        """The requests for the newest bar of `symbol`, or the `not_ready` record instead."""
        frame = self.history.frame(symbol)
        rows = self.strategy.live_rows(frame)
        card = self.strategy.model_card()
        if rows is None:
            record = PredictionRecord(
                self.name, symbol, "trade", "not_ready", self.model, card.version
            )
            return [], record
        out = [PredictionRequest(self.name, symbol, self.model_id(), rows, card.feature_hash)]
        shadow = self.strategy.params.shadow
        if shadow:
            shadow_id = f"{self.model}@{shadow}"
            out.append(replace(out[0], model_id=shadow_id, role="shadow"))
        return out, None

    def failed(self, symbol: str, exc: Exception) -> PredictionRecord:
        """The record of a bar this slot could not even ask about (its card cannot be read, the
        bars are not the model's size, ...): an error, so the fallback decides."""
        detail = f"{type(exc).__name__}: {exc}"[:500]
        version = self.version_in_use
        return PredictionRecord(
            self.name,
            symbol,
            "trade",
            "error",
            self.model,
            version,
            fallback=self.fallback,
            detail=detail,
        )

    def record_for(
        self, request: PredictionRequest, answer: ModelAnswer | BaseException, ms: float
    ) -> PredictionRecord:
        """The journal's record of one answer (a refusal or failure included)."""
        base = PredictionRecord(
            self.name,
            request.symbol,
            request.role,
            "ok",
            self.model,
            row_hash=request.row_hash,
            fallback=self.fallback,
            latency_ms=round(ms, 3),
        )
        if isinstance(answer, BaseException):
            status: Status = "timeout" if isinstance(answer, TimeoutError) else "error"
            detail = f"{type(answer).__name__}: {answer}"[:500]
            return replace(base, status=status, detail=detail)
        if answer.feature_hash != request.feature_hash:
            detail = (
                f"{answer.model}/{answer.version} reads features {answer.feature_hash}, the rows "
                f"were computed for {request.feature_hash}: the next bar uses its features"
            )
            return replace(base, status="mismatch", version=answer.version, detail=detail)
        probs = answer.probabilities
        if not all(math.isfinite(p) for p in probs):
            return replace(base, status="error", version=answer.version, detail="non-finite")
        params = self.strategy.params
        threshold = params.threshold if params.threshold is not None else answer.threshold
        short = params.short_threshold if params.short_threshold is not None else threshold
        return replace(
            base,
            version=answer.version,
            probabilities=probs,
            threshold=threshold,
            short_threshold=short,
        )

    # -- both: what the answer means ---------------------------------------------------------------
    def receive(self, index: int, record: PredictionRecord, step: int) -> None:
        """Take a record (live, or replayed by a rebuild) for bar `index` of its symbol."""
        if record.role == "shadow":
            if self.shadow is not None:
                self._shadow_records[record.symbol] = record
            return
        self._records[record.symbol] = (index, record)
        if record.status in ("ok", "mismatch") and record.version is not None:
            self._follow(record.version, step)

    def _follow(self, version: str, step: int) -> None:
        """The replicas answered with another version (a promotion): it is the one in use now,
        and the slot computes that version's features from the next bar."""
        if version == self.version_in_use:
            return
        previous, self.version_in_use, self.since_step = self.version_in_use, version, step
        if self.on_switch is not None:
            self.on_switch(self.name, previous, version)
        self._read_features_of(version)

    def _read_features_of(self, version: str) -> None:
        """Compute `version`'s features from the next bar on (its card). A card that cannot be
        read (a rebuild of a version since deleted) changes nothing: the records decide, and a
        live bar without features is an `error` record."""
        try:
            if self.strategy.model_card().version != version:
                self.strategy.switch_version(version)
        except Exception:
            pass

    def target(self, symbol: str, index: int) -> int:
        answered = self._answered.get(symbol)
        if answered is not None and answered[0] == index:
            return answered[1]  # the account and the strategy's shadow account both ask
        held = self._records.get(symbol)
        if held is None or held[0] != index:
            raise ValueError(f"{self.name}: no prediction record for {symbol} bar {index}")
        record = held[1]
        value = self._decide(record)
        if value is None:
            value = self.last_target.get(symbol, 0) if record.fallback == "hold" else 0
        self.last_target[symbol] = value
        self._answered[symbol] = (index, value)
        shadow = self._shadow_records.pop(symbol, None)
        if self.shadow is not None and shadow is not None:
            self.shadow.version = shadow.version or self.shadow.version
            traded = value if record.status == "ok" else None
            close = float(self.history.frame(symbol)["close"].iloc[-1])
            self.shadow.observe(symbol, close, traded, self._decide(shadow))
        return value

    def _decide(self, record: PredictionRecord) -> int | None:
        """The record's target: the rule on `ok`, 0 on `not_ready`, None on a failure."""
        if record.status == "not_ready":
            return 0
        if record.status != "ok" or record.probabilities is None:
            return None
        proba = np.asarray([record.probabilities], dtype=np.float64)
        threshold, short = record.threshold, record.short_threshold
        return int(self.strategy.decide(proba, self.allow_short, threshold, short)[0])

    # -- snapshots (n1v1/engine/signals.py StatefulSource) -----------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        """What this slot remembers beyond the bars: the targets a failure holds, the version in
        use and since when, and the shadow's score (JSON data; floats round-trip exactly)."""
        state: dict[str, Any] = {
            "last_target": dict(sorted(self.last_target.items())),
            "version_in_use": self.version_in_use,
            "since_step": self.since_step,
        }
        if self.shadow is not None:
            sh = self.shadow
            state["shadow"] = {
                "version": sh.version,
                "compared": sh.compared,
                "agreed": sh.agreed,
                "scored": sh.scored,
                "hits": dict(sorted(sh.hits.items())),
                "pending": {k: list(v) for k, v in sorted(sh.pending.items())},
            }
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        self.last_target = {str(k): int(v) for k, v in state["last_target"].items()}
        self.version_in_use, self.since_step = state["version_in_use"], state["since_step"]
        shadow = state.get("shadow")
        if self.shadow is not None and shadow is not None:
            self.shadow = ShadowScore(
                version=shadow["version"],
                compared=shadow["compared"],
                agreed=shadow["agreed"],
                scored=shadow["scored"],
                hits=dict(shadow["hits"]),
                pending={
                    k: (float(v[0]), int(v[1]), int(v[2])) for k, v in shadow["pending"].items()
                },
            )
        if self.version_in_use is not None and self.strategy.params.version == "promoted":
            self._read_features_of(self.version_in_use)

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "version": self.version_in_use,
            "since_step": self.since_step,
            "fallback": self.fallback,
        }
        if self.shadow is not None:
            out["shadow"] = self.shadow.summary()
        return out
