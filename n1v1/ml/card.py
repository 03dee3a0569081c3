"""A registry version described by its card alone: what a caller needs to feed it, not run it.

The live engine computes a model's features and decides from its probabilities, but the forward
pass runs on the Model deployment's replicas; reading the card (JSON, checksummed by the
registry) keeps torch and the weights out of the engine process. `load_model` validates the card
through the same `ModelCard.from_card`, so the two can never disagree on what a card means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from n1v1.ml.registry import CARD_FILE, ModelRegistry, RegistryError


@dataclass(frozen=True, eq=False)
class ModelCard:
    name: str
    version: str
    card: dict[str, Any]
    feature_spec_dict: dict[str, Any]
    n_features: int
    n_classes: int
    threshold: float
    kind: str  # the model_spec's kind: "mlp" reads one row, the others a window of rows
    window: int

    @property
    def feature_hash(self) -> str | None:
        value = self.card.get("feature_hash")
        return value if isinstance(value, str) else None

    @classmethod
    def read(cls, registry: ModelRegistry, name: str, version: str = "promoted") -> ModelCard:
        concrete, directory, card = registry.locate(name, version)
        return cls.from_card(name, concrete, card, directory / CARD_FILE)

    @classmethod
    def from_card(cls, name: str, version: str, card: dict[str, Any], where: object) -> ModelCard:
        """Validate the fields of a card that inference depends on; RegistryError names them."""
        spec = card.get("model_spec")
        if not isinstance(spec, dict):
            raise RegistryError(f"{where}: 'model_spec' must be an object, got {spec!r}")
        kind = spec.get("kind", "mlp")
        window = spec.get("window", 32)  # ModelSpec's default
        if not isinstance(kind, str) or isinstance(window, bool) or not isinstance(window, int):
            raise RegistryError(f"{where}: 'model_spec' kind/window are {kind!r}/{window!r}")
        n_features = card_int(card, "n_features", 1, where)
        n_classes = card_int(card, "n_classes", 2, where)
        feature_spec = card.get("feature_spec")
        if not isinstance(feature_spec, dict):
            raise RegistryError(f"{where}: 'feature_spec' must be an object, got {feature_spec!r}")
        names = card.get("feature_names")
        if names is not None and (not isinstance(names, list) or len(names) != n_features):
            raise RegistryError(f"{where}: 'feature_names' must list {n_features} names")
        threshold = card.get("threshold")
        threshold = 0.5 if threshold is None else threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0)
        ):
            raise RegistryError(
                f"{where}: 'threshold' must be a number in [0, 1], got {threshold!r}"
            )
        return cls(
            name=name,
            version=version,
            card=card,
            feature_spec_dict=feature_spec,
            n_features=n_features,
            n_classes=n_classes,
            threshold=float(threshold),
            kind=kind,
            window=window if kind != "mlp" else 1,
        )


def card_int(card: dict[str, Any], key: str, minimum: int, where: object) -> int:
    value = card.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RegistryError(f"{where}: {key!r} must be an int >= {minimum}, got {value!r}")
    return value
