"""Model features built from bars: named, causal, versioned by a hash of their definition.

Every feature is plain arithmetic (log, ratio, sin/cos) on the outputs of `n1v1.indicators`, the one
implementation of each indicator, so a model sees exactly the numbers a rule strategy would.
Formulas, warm-ups and the degenerate-case conventions are in docs/ml/features.md.

Why the conventions for flat markets (a constant window gives %B 0.5, volume z-score 0, range/ATR
0): a feature that turns NaN after the warm-up would silently drop rows from training and blank out
signals in live trading, so after `feature_warmup(spec)` rows every feature is finite for any valid
bars (finite prices > 0, volume >= 0).

Why the hash: a trained model is only valid with the exact features it was trained on. The hash
covers the spec, the column names and FEATURE_CODE_VERSION (bumped whenever a formula changes), and
is stored in the model card; the `ml_signal` strategy refuses a model whose hash does not match.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from n1v1 import indicators as ind

# Bump whenever the formula of any feature changes (not for refactors that keep every value):
# the feature hash changes with it, so models trained on the old formulas are refused.
FEATURE_CODE_VERSION: int = 1

_NS_PER_DAY = 86_400 * 1_000_000_000
_PRICE_COLUMNS = ("high", "low", "close", "volume")

Period = Annotated[int, Strict(), Field(ge=1)]


class FeatureSpec(BaseModel):
    """Which features to compute and their periods (bars). Part of every model card."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    return_horizons: tuple[Period, ...] = (1, 5, 15, 60)
    volatility_horizons: tuple[Period, ...] = (15, 60)
    rsi_period: Period = 14
    macd: tuple[Period, Period, Period] = (12, 26, 9)
    atr_period: Period = 14
    bollinger_period: Period = 20
    bollinger_k: float = Field(2.0, gt=0, allow_inf_nan=False)
    volume_z_period: Period = 60
    adx_period: Period = 14
    time_of_day: bool = Field(True, strict=True)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        for name in ("return_horizons", "volatility_horizons"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: horizons must be distinct, got {values}")
        fast, slow, _ = self.macd
        if fast >= slow:
            raise ValueError(f"macd: fast ({fast}) must be shorter than slow ({slow})")
        # rolling_std needs at least 2 values to be more than a constant 0.
        if any(h < 2 for h in self.volatility_horizons):
            raise ValueError(
                f"volatility_horizons: each must be >= 2, got {self.volatility_horizons}"
            )
        if self.volume_z_period < 2:
            raise ValueError(f"volume_z_period: must be >= 2, got {self.volume_z_period}")
        return self


def _warmups(spec: FeatureSpec) -> dict[str, int]:
    """Feature name -> index of its first finite value (the number of NaN rows in front)."""
    fast, slow, signal = spec.macd
    out: dict[str, int] = {}
    for h in spec.return_horizons:
        out[f"ret_{h}"] = h  # needs close[t-h]
    for h in spec.volatility_horizons:
        out[f"vol_{h}"] = h  # h one-bar returns, the first of which exists at bar 1
    out[f"rsi_{spec.rsi_period}"] = spec.rsi_period
    out[f"macd_hist_{fast}_{slow}_{signal}"] = slow + signal - 2
    out[f"range_atr_{spec.atr_period}"] = spec.atr_period - 1
    out[f"atr_close_{spec.atr_period}"] = spec.atr_period - 1
    out[f"bb_pctb_{spec.bollinger_period}"] = spec.bollinger_period - 1
    out[f"volume_z_{spec.volume_z_period}"] = spec.volume_z_period - 1
    out[f"adx_{spec.adx_period}"] = 2 * spec.adx_period - 1
    if spec.time_of_day:
        out["tod_sin"] = 0
        out["tod_cos"] = 0
    return out


def feature_names(spec: FeatureSpec) -> list[str]:
    """Column names in output order; periods are part of the names so two specs rarely collide."""
    return list(_warmups(spec))


def feature_warmups(spec: FeatureSpec) -> dict[str, int]:
    """Per feature, how many leading rows are NaN (docs/ml/features.md has the table)."""
    return _warmups(spec)


def feature_warmup(spec: FeatureSpec) -> int:
    """Rows before every feature is finite: row `feature_warmup(spec)` is the first usable one."""
    return max(_warmups(spec).values())


def feature_hash(spec: FeatureSpec) -> str:
    """16 hex chars of sha256 over canonical JSON of the spec, the names and the code version.

    Canonical = sorted keys, no whitespace, floats in Python's shortest round-trip repr, so the
    value is the same in every process and on every machine (unlike Python's salted `hash()`).
    """
    payload = {
        "spec": spec.model_dump(mode="json"),
        "names": feature_names(spec),
        "feature_code_version": FEATURE_CODE_VERSION,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _bar_arrays(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(high, low, close, volume) float64 arrays after the checks the indicators cannot make."""
    _check_frame(bars)
    arrays = []
    for name in _PRICE_COLUMNS:
        try:
            arrays.append(np.asarray(bars[name], dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bars: column {name!r} is not numeric ({exc})") from exc
    return tuple(arrays)


def _check_frame(bars: pd.DataFrame) -> None:
    if not isinstance(bars, pd.DataFrame):
        raise ValueError(f"bars: expected a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in _PRICE_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars: missing column(s) {missing}; have {list(bars.columns)}")
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError(f"bars: index must be a DatetimeIndex, got {type(bars.index).__name__}")
    if not (bars.index.is_monotonic_increasing and bars.index.is_unique):
        raise ValueError("bars: index must be strictly increasing (sort and de-duplicate first)")


def _check_close(close: np.ndarray, index: pd.DatetimeIndex) -> None:
    bad = ~(close > 0.0)  # also catches NaN
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"bars: close must be finite and > 0 (log returns), found {close[i]} "
            f"at row {i} ({index[i]})"
        )


def _log_return(log_close: np.ndarray, h: int) -> np.ndarray:
    out = np.full(log_close.shape[0], np.nan)
    if log_close.shape[0] > h:
        np.subtract(log_close[h:], log_close[:-h], out=out[h:])
    return out


def _ratio(num: np.ndarray, den: np.ndarray, flat: float) -> np.ndarray:
    """num/den; `flat` where den == 0 (a degenerate window), NaN where den is NaN (warm-up)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    out[den == 0.0] = flat
    return out


def _time_of_day(index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of 2*pi*(UTC time of day / 24 h); for minute bars, minute-of-day / 1440."""
    # UTC nanoseconds for tz-aware and (assumed UTC) naive indexes
    ns = index.asi8 if index.unit == "ns" else index.as_unit("ns").asi8
    angle = (ns % _NS_PER_DAY) * (2.0 * math.pi / _NS_PER_DAY)
    return np.sin(angle), np.cos(angle)


def build_features(bars: pd.DataFrame, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Feature frame: columns `feature_names(spec)`, float64, index `bars.index`, NaN in warm-up.

    Causal: row t uses bars 0..t only, so `build_features(bars[:k])` equals the first k rows of
    `build_features(bars)` exactly (tests/test_ml_features.py checks this on random cuts).
    """
    spec = FeatureSpec() if spec is None else spec
    block = _feature_block(bars, spec)
    return pd.DataFrame(block.T, index=bars.index, columns=feature_names(spec), copy=False)


def feature_matrix(
    bars: pd.DataFrame, spec: FeatureSpec, columns: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """`build_features(bars, spec).to_numpy()` without building the frame: a live engine asks
    for the last rows of every symbol on every bar, where the frame costs more than the maths.

    `columns`: the frame's (high, low, close, volume) as float64 arrays when the caller holds
    them already (the live window does): pandas' column lookups cost as much as the indicators.
    """
    return _feature_block(bars, spec, columns).T


def _feature_block(
    bars: pd.DataFrame, spec: FeatureSpec, columns: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """The features as a (features, n) block: each feature contiguous."""
    if not isinstance(spec, FeatureSpec):
        raise ValueError(f"spec: expected a FeatureSpec, got {type(spec).__name__}")
    if columns is None:
        high, low, close, volume = _bar_arrays(bars)
    else:
        _check_frame(bars)
        high, low, close, volume = columns
    _check_close(close, bars.index)
    n = close.shape[0]
    names = feature_names(spec)
    # One (features, n) block whose transpose is the frame: each column is contiguous, no copy.
    block = np.empty((len(names), n), dtype=np.float64)
    columns = iter(block)

    log_close = np.log(close)
    for h in spec.return_horizons:
        next(columns)[:] = _log_return(log_close, h)
    one_bar = _log_return(log_close, 1)
    for h in spec.volatility_horizons:
        col = next(columns)
        col[:1] = np.nan
        col[1:] = ind.rolling_std(one_bar[1:], h)  # the first 1-bar return is at bar 1

    next(columns)[:] = ind.rsi(close, spec.rsi_period) / 100.0
    fast, slow, signal = spec.macd
    next(columns)[:] = ind.macd(close, fast, slow, signal)[2] / close

    atr = ind.atr(high, low, close, spec.atr_period)
    next(columns)[:] = _ratio(high - low, atr, flat=0.0)  # ATR 0: no range in any bar so far
    next(columns)[:] = atr / close

    _, upper, lower = ind.bollinger(close, spec.bollinger_period, spec.bollinger_k)
    next(columns)[:] = _ratio(close - lower, upper - lower, flat=0.5)  # flat band: at the middle

    vol_z = ind.zscore(np.log1p(volume), spec.volume_z_period)
    vol_z[spec.volume_z_period - 1 :][np.isnan(vol_z[spec.volume_z_period - 1 :])] = 0.0
    next(columns)[:] = vol_z  # constant volume window: the bar is exactly average, z = 0

    next(columns)[:] = ind.adx(high, low, close, spec.adx_period)[0] / 100.0
    if spec.time_of_day:
        sin, cos = _time_of_day(bars.index)
        next(columns)[:] = sin
        next(columns)[:] = cos
    if next(columns, None) is not None:  # pragma: no cover - names and code out of step
        raise AssertionError("feature_names and build_features disagree on the column count")
    return block
