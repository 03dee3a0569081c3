"""What to train: the recipe of a model (data window, features, labels, network, optimiser).

Plain pydantic, no torch or Ray, so the CLI, evaluation and the model card can all read it cheaply.
"""

from __future__ import annotations

from typing import Literal

import pydantic
from pydantic import Field

from n1v1.ml.features import FeatureSpec
from n1v1.ml.labels import LabelSpec
from n1v1.ml.models import ModelSpec
from n1v1.ml.registry_io import validate_name


class TrainSpec(pydantic.BaseModel):
    """What to train: data window, features, labels, model and optimiser (stored in the card)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="registry model name")
    data: str = Field(min_length=1, description="bundled dataset name or CSV/Parquet file")
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    features: FeatureSpec = FeatureSpec()
    labels: LabelSpec = LabelSpec()
    model: ModelSpec = ModelSpec()
    epochs: int = Field(30, ge=1, le=100_000)
    batch_size: int = Field(512, ge=1, le=1_000_000)
    lr: float = Field(1e-3, gt=0, le=10, allow_inf_nan=False)
    weight_decay: float = Field(1e-4, ge=0, le=10, allow_inf_nan=False)
    patience: int = Field(5, ge=1, le=100_000, description="epochs without a lower val loss")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    class_weight: Literal["none", "balanced"] = "none"
    checkpoints_to_keep: int = Field(3, ge=1, le=10_000, description="best by val loss + latest")

    @pydantic.field_validator("name")
    @classmethod
    def _registry_name(cls, value: str) -> str:
        return validate_name(value)  # RegistryError is a ValueError: pydantic reports it
