"""The Engine's `Predictor` on Ray Serve: the Model deployment's replicas, by deployment handle.

One call per model id and bar (`multiplexed_model_id`: "name" for the promoted version, or
"name@vNNNN"), carrying every symbol's rows; Serve routes it to a replica that holds the model,
and the replica answers each set of rows with its last row's probabilities. The engine's loop
thread waits on the responses for at most its budget, then cancels what has not answered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ray.serve.handle import DeploymentHandle, DeploymentResponse

from n1v1.live.predictions import ModelAnswer, PredictionRequest, group_by_model


class ModelError(RuntimeError):
    """The Model deployment refused the call (an unknown model, rows of the wrong width)."""


class ServePredictions:
    def __init__(self, calls: list[tuple[list[int], DeploymentResponse]], n: int) -> None:
        self.calls, self.n = calls, n

    def wait(self, timeout_s: float) -> list[ModelAnswer | BaseException]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        out: list[ModelAnswer | BaseException] = [TimeoutError("no answer")] * self.n
        for members, response in self.calls:
            try:
                reply = response.result(timeout_s=max(0.001, deadline - time.monotonic()))
                answers = parse_reply(reply, len(members))
            except TimeoutError:
                response.cancel()
                exc: BaseException = TimeoutError(f"no answer within {timeout_s:g} s")
                answers = [exc] * len(members)
            except Exception as err:  # a replica died, the model raised: an input, not a crash
                answers = [err] * len(members)
            for i, answer in zip(members, answers, strict=True):
                out[i] = answer
        return out


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

    def submit(self, requests: Sequence[PredictionRequest]) -> ServePredictions:
        calls = []
        for model_id, members in group_by_model(requests).items():
            sets = [requests[i].rows.tolist() for i in members]
            response = self.handle.options(multiplexed_model_id=model_id).predict_last.remote(sets)
            calls.append((members, response))
        return ServePredictions(calls, len(requests))
