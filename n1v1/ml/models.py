"""The PyTorch models behind one interface: `build_model(spec, n_features, n_classes)` -> a module
whose `forward(x)` returns logits `[B, n_classes]`.

- `mlp`: the feature vector of one bar, `x: [B, F]`.
- `tcn`: a causal temporal convolution network over the last `window` bars, `x: [B, window, F]`.
  Every convolution is padded on the LEFT only, so the hidden state at step t is a function of
  inputs 0..t and never of a later bar; the head reads the last step.
- `gru`: a one-layer GRU over the same windows; the head reads the last hidden state.

Weights are stored as a plain `state_dict` (tensors only) and read back with
`torch.load(weights_only=True)`: the full pickle protocol can run arbitrary code, and a model file
may come from a shared volume or bucket, so nothing else is ever unpickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pydantic
import torch
from torch import nn
from torch.nn import functional

from n1v1.ml.registry import RegistryError

__all__ = [
    "GRUClassifier",
    "MLPClassifier",
    "ModelSpec",
    "TCNClassifier",
    "build_model",
    "load_state_dict",
    "read_state_dict",
    "receptive_field",
    "save_state_dict",
]


class ModelSpec(pydantic.BaseModel):
    """Architecture of a model; stored in the card (`model_spec`) so a version can be rebuilt."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    kind: Literal["mlp", "tcn", "gru"] = "mlp"
    hidden: tuple[pydantic.PositiveInt, ...] = pydantic.Field((64, 32), min_length=1)
    dropout: float = pydantic.Field(0.1, ge=0.0, lt=1.0)
    window: int = pydantic.Field(32, ge=1, le=4096, description="tcn/gru: bars per input window")
    channels: int = pydantic.Field(32, ge=1, le=4096, description="tcn channels, gru hidden size")
    kernel_size: int = pydantic.Field(3, ge=1, le=64)
    levels: int = pydantic.Field(3, ge=1, le=16, description="tcn residual blocks")


def receptive_field(spec: ModelSpec) -> int:
    """Bars the TCN's last step can see: each block has two convolutions of dilation 2**i, each
    adding (kernel_size - 1) * 2**i steps of history: 1 + 2 * (k - 1) * (2**levels - 1)."""
    return 1 + 2 * (spec.kernel_size - 1) * (2**spec.levels - 1)


def _check_input(x: torch.Tensor, ndim: int, n_features: int, kind: str) -> None:
    if x.ndim != ndim or x.shape[-1] != n_features:
        want = "[B, F]" if ndim == 2 else "[B, window, F]"
        raise ValueError(
            f"{kind} input: expected shape {want} with F={n_features}, got {tuple(x.shape)}"
        )


class MLPClassifier(nn.Module):
    """Linear -> ReLU -> Dropout per hidden layer, then a linear head to the class logits."""

    def __init__(self, n_features: int, n_classes: int, hidden: tuple[int, ...], dropout: float):
        super().__init__()
        self.n_features = n_features
        layers: list[nn.Module] = []
        width = n_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, 2, self.n_features, "mlp")
        return self.net(x)


class _CausalConv(nn.Module):
    """Conv1d that pads (kernel_size - 1) * dilation steps on the left and none on the right, so
    output step t only mixes input steps t - (k-1)*d .. t."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int):
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, T]
        return self.conv(functional.pad(x, (self.left_pad, 0)))


class _TemporalBlock(nn.Module):
    """Two causal convolutions with ReLU and dropout, plus a residual (1x1 conv when widths
    differ) — the block of Bai, Kolter & Koltun (2018) without weight norm."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = _CausalConv(c_in, c_out, kernel_size, dilation)
        self.conv2 = _CausalConv(c_out, c_out, kernel_size, dilation)
        self.dropout = nn.Dropout(dropout)
        self.residual = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(torch.relu(self.conv1(x)))
        out = self.dropout(torch.relu(self.conv2(out)))
        return torch.relu(out + self.residual(x))


class TCNClassifier(nn.Module):
    """Causal dilated convolutions over a window; the head sees only the last time step."""

    def __init__(self, n_features: int, n_classes: int, spec: ModelSpec):
        super().__init__()
        self.n_features = n_features
        blocks = [
            _TemporalBlock(
                n_features if i == 0 else spec.channels,
                spec.channels,
                spec.kernel_size,
                2**i,
                spec.dropout,
            )
            for i in range(spec.levels)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(spec.channels, n_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden representation per step, [B, T, channels]; step t depends on inputs <= t."""
        _check_input(x, 3, self.n_features, "tcn")
        return self.blocks(x.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x)[:, -1, :])


class GRUClassifier(nn.Module):
    """One GRU layer (hidden size = `channels`), dropout, and a linear head on the last state."""

    def __init__(self, n_features: int, n_classes: int, spec: ModelSpec):
        super().__init__()
        self.n_features = n_features
        self.gru = nn.GRU(n_features, spec.channels, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(spec.channels, n_classes)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden state per step, [B, T, channels] (a GRU is causal by construction)."""
        _check_input(x, 3, self.n_features, "gru")
        out, _ = self.gru(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encode(x)[:, -1, :]))


def build_model(
    spec: ModelSpec, n_features: int, n_classes: int, *, seed: int | None = None
) -> nn.Module:
    """A freshly initialised model for `spec`. With `seed`, initialisation is drawn from
    `torch.manual_seed(seed)` inside a forked RNG, so it is reproducible and leaves the caller's
    global RNG state untouched; without it the current global RNG is used (the training loop seeds
    it once)."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"spec: expected ModelSpec, got {type(spec).__name__}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features: expected a positive int, got {n_features!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    if seed is None:
        return _construct(spec, n_features, n_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _construct(spec, n_features, n_classes)


def _construct(spec: ModelSpec, n_features: int, n_classes: int) -> nn.Module:
    if spec.kind == "mlp":
        return MLPClassifier(n_features, n_classes, spec.hidden, spec.dropout)
    if spec.kind == "tcn":
        return TCNClassifier(n_features, n_classes, spec)
    return GRUClassifier(n_features, n_classes, spec)


def save_state_dict(model: nn.Module, path: str | Path) -> None:
    """Write the model's weights (a dict of tensors, nothing else) with `torch.save`."""
    torch.save(model.state_dict(), Path(path))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file with `weights_only=True` (tensors and plain containers only; any other
    pickled object is refused) onto the CPU. Every failure is a RegistryError naming the file."""
    path = Path(path)
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise RegistryError(f"{path}: weights file not found") from None
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read weights file: {exc}") from None
    except Exception as exc:  # a damaged file can fail in any way inside unpickling
        text = str(exc).strip()
        first_line = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
        raise RegistryError(
            f"{path}: refused to load weights (weights_only=True accepts tensors only): "
            f"{first_line}"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise RegistryError(f"{path}: expected a state_dict (str -> tensor), got {type(state)}")
    return dict(state)


def load_state_dict(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights from `path` into `model` (strict: every key and shape must match)."""
    state = read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise RegistryError(f"{path}: weights do not fit the model: {detail}") from None
    return model
