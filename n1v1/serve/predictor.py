"""The Engine's `Predictor` on Ray Serve: the Model deployment's replicas, by deployment handle.

One call per model id and bar (`multiplexed_model_id`: "name" for the promoted version, or
"name@vNNNN"), carrying every symbol's rows; Serve routes it to a replica that holds the model,
and the replica answers each set of rows with its last row's probabilities. The engine's loop
thread waits on the responses for at most its budget, then cancels what has not answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponse

from n1v1.live.predictions import (
    GroupedAnswers,
    ModelAnswer,
    PredictionRequest,
    group_by_model,
)


class ModelError(RuntimeError):
    """The Model deployment refused the call (an unknown model, rows of the wrong width)."""


class ServePredictions(GroupedAnswers):
    """One DeploymentResponse per model id; an answer too late is cancelled."""

    def _answers(self, handle: Any, n: int, remaining_s: float) -> list[Any]:
        response: DeploymentResponse = handle
        return parse_reply(response.result(timeout_s=max(0.001, remaining_s)), n)

    def _cancel(self, handle: Any) -> None:
        handle.cancel()


def parse_reply(reply: Any, n: int) -> list[ModelAnswer | BaseException]:
    if isinstance(reply, dict) and "error" in reply:
        error = ModelError(str(reply["error"].get("message", reply["error"])))
        return [error] * n
    answers = reply["answers"]
    if len(answers) != n:
        raise ModelError(f"asked about {n} sets of rows, {len(answers)} answers came back")
    return [
        ModelAnswer(
            a["model"],
            a["version"],
            a["feature_hash"],
            float(a["threshold"]),
            tuple(float("nan") if p is None else float(p) for p in a["probabilities"]),
        )
        for a in answers
    ]


class ServePredictor:
    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle
        # One handle per model id, made once: `options()` copies the handle on every call.
        self._by_model: dict[str, DeploymentHandle] = {}

    def _handle_for(self, model_id: str) -> DeploymentHandle:
        handle = self._by_model.get(model_id)
        if handle is None:
            handle = self.handle.options(multiplexed_model_id=model_id)
            self._by_model[model_id] = handle
        return handle

    def submit(self, requests: Sequence[PredictionRequest]) -> ServePredictions:
        calls = []
        for model_id, members in group_by_model(requests).items():
            sets = [requests[i].rows.tolist() for i in members]
            response = self._handle_for(model_id).predict_last.remote(sets)
            calls.append((members, response))
        return ServePredictions(calls, len(requests))
