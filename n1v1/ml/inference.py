"""Load a registry version and turn raw feature rows into class probabilities, in batches.

`predict_proba` is the one inference path used by the `ml_signal` strategy, evaluation, the
benchmark and (later) serving, so a model behaves identically everywhere. It is vectorised end to
end: one scaler transform over all rows, then `batch_size` rows (or windows) per forward pass under
`torch.inference_mode()`, with no per-row Python.

Rows whose input is not finite (feature warm-up) get NaN probabilities rather than a number
computed from garbage; for the sequence models that is every window touching such a row, plus the
first `window - 1` rows, which have no full window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
import torch

from n1v1.ml.card import ModelCard
from n1v1.ml.models import ModelSpec, build_model, load_state_dict
from n1v1.ml.registry import (
    CARD_FILE,
    MODEL_FILE,
    SCALER_FILE,
    ModelRegistry,
    RegistryError,
    read_json,
)
from n1v1.ml.scaling import Standardizer
from n1v1.ml.splits import sequence_windows

__all__ = ["LoadedModel", "in_memory_model", "load_model"]


@dataclass(eq=False)
class LoadedModel:
    """A model ready for inference: weights in eval mode, its scaler and its card."""

    name: str
    version: str
    card: dict[str, Any]
    spec: ModelSpec
    feature_spec_dict: dict[str, Any]
    scaler: Standardizer
    model: torch.nn.Module
    n_classes: int
    threshold: float = 0.5
    batch_size: int = field(default=4096)

    @property
    def n_features(self) -> int:
        return self.scaler.n_features

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def window(self) -> int:
        """Rows per input: 1 for an MLP, the sequence window otherwise (as `ModelCard`)."""
        return 1 if self.spec.kind == "mlp" else self.spec.window

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_classes] (float64, rows sum to 1) for raw, unscaled features
        [n, n_features]. Sequence models: row t uses rows t-window+1..t; the first window-1 rows
        are NaN. Any row (or window) with a non-finite input is NaN."""
        X = np.asarray(features, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"features: expected shape [n, {self.n_features}] for {self.name}/{self.version}, "
                f"got {X.shape}"
            )
        batch_size = self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        n = X.shape[0]
        out = np.full((n, self.n_classes), np.nan)
        Z = self.scaler.transform(X)  # float32, a fresh array we may modify
        bad = ~np.isfinite(Z).all(axis=1)
        Z[bad] = 0.0  # keeps NaN out of the forward pass; those rows are reset to NaN below
        self.model.eval()
        if self.spec.kind == "mlp":
            self._run(Z, out, batch_size)
            out[bad] = np.nan
            return out
        window = self.spec.window
        if n < window:
            return out
        windows = sequence_windows(Z, window)  # [n - window + 1, window, f], a view
        self._run(windows, out[window - 1 :], batch_size)
        bad_count = np.concatenate(([0], np.cumsum(bad)))
        out[window - 1 :][bad_count[window:] - bad_count[:-window] > 0] = np.nan
        return out

    def _run(self, inputs: np.ndarray, out: np.ndarray, batch_size: int) -> None:
        """Forward `inputs` (rows or windows) in batches, writing softmax probabilities to out."""
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], batch_size):
                # writeable too: windows are a read-only view, which torch warns about
                batch = np.require(inputs[start : start + batch_size], requirements=["C", "W"])
                logits = self.model(torch.from_numpy(batch))
                out[start : start + batch.shape[0]] = torch.softmax(logits, dim=1).numpy()


def in_memory_model(
    spec: Any, scaler: Standardizer, net: torch.nn.Module, *, name: str, version: str
) -> LoadedModel:
    """A network trained in this process (a TrainSpec-like `spec`: features, labels, model) as a
    LoadedModel, so it predicts through the one inference path (`predict_proba`) before, or
    without, being registered. Its card holds what `ml_signal` checks (features and their hash)."""
    from n1v1.ml.features import feature_hash, feature_names

    card = {
        "name": name,
        "feature_spec": spec.features.model_dump(mode="json"),
        "feature_names": feature_names(spec.features),
        "feature_hash": feature_hash(spec.features),
        "label_spec": spec.labels.model_dump(mode="json"),
        "model_spec": spec.model.model_dump(mode="json"),
    }
    net.eval()
    return LoadedModel(
        name=name,
        version=version,
        card=card,
        spec=spec.model,
        feature_spec_dict=card["feature_spec"],
        scaler=scaler,
        model=net,
        n_classes=spec.labels.n_classes,
    )


def load_model(registry: ModelRegistry, name: str, version: str = "promoted") -> LoadedModel:
    """Load a verified registry version (checksums checked, weights read with weights_only=True).
    A card or scaler that does not describe a loadable model is a RegistryError naming the file."""
    concrete, directory, card = registry.locate(name, version)
    card_file = directory / CARD_FILE
    spec_dict = card.get("model_spec")
    if not isinstance(spec_dict, dict):
        raise RegistryError(f"{card_file}: 'model_spec' must be an object, got {spec_dict!r}")
    try:
        spec = ModelSpec.model_validate(spec_dict)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise RegistryError(f"{card_file}: 'model_spec': {problems}") from None
    described = ModelCard.from_card(name, concrete, card, card_file)  # one reading of a card
    n_features, n_classes = described.n_features, described.n_classes
    feature_spec, threshold = described.feature_spec_dict, described.threshold

    scaler_file = directory / SCALER_FILE
    try:
        scaler = Standardizer.from_dict(read_json(scaler_file))
    except RegistryError:
        raise
    except ValueError as exc:
        raise RegistryError(f"{scaler_file}: {exc}") from None
    if scaler.n_features != n_features:
        raise RegistryError(
            f"{scaler_file}: has {scaler.n_features} features, {card_file} says {n_features}"
        )
    # seed=0 only so building does not consume the caller's RNG; the weights are replaced next.
    model = build_model(spec, n_features, n_classes, seed=0)
    load_state_dict(model, directory / MODEL_FILE)
    model.eval()
    return LoadedModel(
        name=name,
        version=concrete,
        card=card,
        spec=spec,
        feature_spec_dict=feature_spec,
        scaler=scaler,
        model=model,
        n_classes=n_classes,
        threshold=float(threshold),
    )
