"""Labels: did the price move far enough over the next h bars to pay for a round trip?

The forward return over h bars, `close[t+h] / close[t] - 1`, is compared with a cost threshold
`2*fee + margin` (a fee to enter and one to exit, plus a margin for slippage and noise):

* binary:  1 (long) if fwd > threshold, else 0 (flat);
* ternary: 0 (short) if fwd < -threshold, 2 (long) if fwd > threshold, else 1 (flat).

The last h bars have no future close, so they have no label: they are dropped, never given a class
(filling them as "flat" would teach the model that the end of every dataset is quiet).
docs/ml/features.md describes the alignment with a worked example.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict

CLASS_NAMES = {"binary": ("flat", "long"), "ternary": ("short", "flat", "long")}


class LabelSpec(BaseModel):
    """The label definition stored in every model card."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: Annotated[int, Strict(), Field(ge=1)] = 15
    kind: Literal["binary", "ternary"] = "binary"
    fee: float = Field(0.001, ge=0, lt=1, allow_inf_nan=False)  # fraction per side
    margin: float = Field(0.0005, ge=0, lt=1, allow_inf_nan=False)

    @property
    def threshold(self) -> float:
        """Return a trade must beat: fees both ways plus the margin."""
        return 2.0 * self.fee + self.margin

    @property
    def n_classes(self) -> int:
        return 2 if self.kind == "binary" else 3


def _close_array(close: object, name: str = "close") -> np.ndarray:
    try:
        arr = np.asarray(close, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float64 array ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr > 0.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}: prices must be finite and > 0, found {arr[i]} at index {i}")
    return arr


def forward_returns(close: np.ndarray, horizon: int) -> np.ndarray:
    """`close[t+h] / close[t] - 1` for every t; the last h values are NaN (no future close)."""
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise ValueError(f"horizon: must be an integer >= 1, got {horizon!r}")
    c = _close_array(close)
    out = np.full(c.shape[0], np.nan)
    if c.shape[0] > horizon:
        out[:-horizon] = c[horizon:] / c[:-horizon] - 1.0
    return out


def classify_returns(forward_return: np.ndarray, spec: LabelSpec) -> np.ndarray:
    """int64 classes of finite forward returns (see the module docstring); NaN is an error."""
    fwd = np.asarray(forward_return, dtype=np.float64)
    if not np.isfinite(fwd).all():
        i = int(np.flatnonzero(~np.isfinite(fwd))[0])
        raise ValueError(f"forward_return: no class for non-finite value {fwd[i]} at index {i}")
    thr = spec.threshold
    if spec.kind == "binary":
        return (fwd > thr).astype(np.int64)
    return np.where(fwd > thr, 2, np.where(fwd < -thr, 0, 1)).astype(np.int64)


def make_labels(bars: pd.DataFrame, spec: LabelSpec | None = None) -> pd.Series:
    """int64 class per bar for the first n-h bars (index bars.index[:n-h]), named "label"."""
    spec = LabelSpec() if spec is None else spec
    if not isinstance(bars, pd.DataFrame) or "close" not in bars.columns:
        raise ValueError("bars: expected a bars DataFrame with a 'close' column")
    fwd = forward_returns(bars["close"].to_numpy(), spec.horizon)
    keep = max(fwd.shape[0] - spec.horizon, 0)
    return pd.Series(classify_returns(fwd[:keep], spec), index=bars.index[:keep], name="label")
