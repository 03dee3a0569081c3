"""The Strategy protocol: validated parameters in, one causal target position per bar out.

Every consumer (the event-driven engine, the compiled fast path, sweeps, walk-forward, the
regime selector) talks to strategies through this one small API, so a strategy written once runs
everywhere. A strategy is a pure function of the bars it is given: `target_positions(bars)[t]` may
only depend on `bars[: t + 1]`. That makes it cheap to compute over a whole history at once
(vectorised) and still correct in live trading, where the future does not exist yet.
"""

from __future__ import annotations

import abc
import difflib
import types
import typing
import weakref
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import annotated_types as at
import numpy as np
import pandas as pd
import pydantic
from numba import njit

from n1v1 import indicators as ind

BAR_COLUMNS = ("open", "high", "low", "close", "volume")


class StrategyError(ValueError):
    """A strategy could not be found, built or run because of what the user asked for."""


class StrategyParams(pydantic.BaseModel):
    """Base of every strategy's parameter model.

    Frozen so a strategy's parameters cannot drift after validation; `extra="forbid"` so a misspelt
    parameter is an error instead of a silently ignored setting.
    """

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class VolumeFilterParams(StrategyParams):
    """Optional volume confirmation shared by the breakout and reversion strategies.

    An entry at bar t is only taken when
    `volume[t] >= volume_factor * SMA(volume, volume_period)[t]` (the mean includes bar t).
    The default `volume_factor = 0.0` switches the filter off, so the strategies' textbook rules
    are the defaults and volume confirmation is an explicit choice.
    Exits are never filtered: a filter exists to avoid weak entries, not to trap you in a position.
    """

    volume_factor: float = pydantic.Field(
        0.0, ge=0.0, le=20.0, description="entry needs volume >= factor x mean volume; 0 = off"
    )
    volume_period: int = pydantic.Field(
        20, ge=1, le=1000, description="bars in the rolling mean volume of the filter"
    )


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One tunable parameter as a sweep sees it: its type, inclusive bounds and default.

    `low`/`high` are None for parameters without numeric bounds (bool: False/True; str: see
    `choices`, None when any string is accepted).
    """

    type: type
    low: float | int | bool | None
    high: float | int | bool | None
    default: Any
    description: str = ""
    choices: tuple[str, ...] | None = None
    required: bool = False  # no default: the strategy cannot be built without it


def needs_parameters(cls: type) -> bool:
    """True for a strategy that has required parameters (e.g. ml_signal's model name), which
    therefore cannot run with its defaults alone (sweeps, regime_switch, `cls()`)."""
    return any(spec.required for spec in param_space(cls).values())


def _params_model(target: type) -> type[StrategyParams]:
    if isinstance(target, type) and issubclass(target, StrategyParams):
        return target
    params = getattr(target, "Params", None)
    if isinstance(params, type) and issubclass(params, StrategyParams):
        return params
    raise StrategyError(f"{target!r} is neither a Strategy class nor a StrategyParams model")


def param_space(cls: type) -> dict[str, ParamSpec]:
    """name -> ParamSpec for a Strategy class (or its Params model), read from the pydantic bounds.

    Sweeps draw their grids from here, so the bounds a user may set and the bounds a sweep explores
    are the same numbers (`ge`/`le` inclusive; `gt`/`lt` are reported as the bound itself).
    """
    spec: dict[str, ParamSpec] = {}
    for field_name, info in _params_model(cls).model_fields.items():
        low: Any = None
        high: Any = None
        for meta in info.metadata:
            if isinstance(meta, at.Ge | at.Gt):
                low = meta.ge if isinstance(meta, at.Ge) else meta.gt
            elif isinstance(meta, at.Le | at.Lt):
                high = meta.le if isinstance(meta, at.Le) else meta.lt
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        optional = isinstance(ann, types.UnionType) or typing.get_origin(ann) is typing.Union
        if optional and len(args) == 1:  # `float | None`: a float that may be left unset
            ann = args[0]
        if ann is bool:
            low, high = False, True
        choices = typing.get_args(ann) if typing.get_origin(ann) is typing.Literal else None
        kind = ann if ann in (int, float, bool, str) else str
        required = info.is_required()
        spec[field_name] = ParamSpec(
            type=kind,
            low=low,
            high=high,
            default=None if required else info.default,
            description=info.description or "",
            choices=tuple(choices) if choices else None,
            required=required,
        )
    return spec


def unknown_param_message(strategy: str, name: str, valid: list[str]) -> str:
    """'x: unknown parameter ...' with a did-you-mean hint; shared by construction and overrides."""
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listed = ", ".join(valid) if valid else "(none)"
    return f"{strategy}: unknown parameter {name!r}{hint}; valid parameters: {listed}"


def format_validation_error(
    strategy: str, params_cls: type[StrategyParams], err: pydantic.ValidationError
) -> str:
    space = param_space(params_cls)
    parts = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        value = e.get("input")
        kind = e["type"]
        if kind == "extra_forbidden":
            parts.append(unknown_param_message(strategy, field, list(space)))
        elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            s = space[field]
            parts.append(f"{strategy}: parameter {field}={value} out of bounds [{s.low}, {s.high}]")
        elif field:
            parts.append(f"{strategy}: parameter {field}={value!r}: {e['msg']}")
        else:  # cross-field validator: its message already names the fields involved
            parts.append(f"{strategy}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


# Live trading re-runs every strategy on a fresh trailing window each bar, where pandas' column
# lookups cost more than the indicators. The window's owner hands over the columns it already holds
# as arrays (`attach_columns`); `Strategy.columns` returns them for that very frame object only.
_PRESPLIT: dict[int, tuple[weakref.ref[pd.DataFrame], dict[str, np.ndarray]]] = {}


def attach_columns(frame: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> None:
    """Let strategies read `frame`'s columns as these (contiguous float64, read-only) arrays."""
    key = id(frame)
    frozen = {}
    for name, values in arrays.items():
        array = np.ascontiguousarray(values, dtype=np.float64)
        array.flags.writeable = False
        frozen[name] = array
    _PRESPLIT[key] = (weakref.ref(frame, lambda _ref: _PRESPLIT.pop(key, None)), frozen)


class Strategy(abc.ABC):
    """Base class of every strategy. Subclasses set `name` and `Params` and implement the rule.

    Subclass contract: `target_positions(bars, allow_short)` returns an int8 array of len(bars)
    with values in {-1, 0, +1} ({0, +1} when allow_short is False), 0 for t < warmup, and value t
    computed from bars[: t + 1] only.
    """

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams | Mapping[str, Any] | None = None) -> None:
        label = getattr(type(self), "name", type(self).__name__)
        if not isinstance(getattr(type(self), "name", None), str):
            raise StrategyError(f"strategy class {type(self).__name__} must define `name: str`")
        if isinstance(params, StrategyParams):
            if not isinstance(params, self.Params):
                raise StrategyError(
                    f"{label}: expected {self.Params.__name__}, got {type(params).__name__}"
                )
            self.params: StrategyParams = params
            return
        if params is not None and not isinstance(params, Mapping):
            raise StrategyError(f"{label}: params must be a mapping, got {type(params).__name__}")
        try:
            self.params = self.Params(**dict(params or {}))
        except pydantic.ValidationError as err:
            raise StrategyError(format_validation_error(label, self.Params, err)) from None

    @property
    def warmup(self) -> int:
        """Bars before the first bar whose target may be non-zero."""
        return 0

    @abc.abstractmethod
    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        """Target position per bar (int8, -1/0/+1), causal, 0 during warm-up."""

    def cached_target_positions(
        self, bars: pd.DataFrame, allow_short: bool, cache: dict[Hashable, np.ndarray]
    ) -> np.ndarray:
        """`target_positions` for one of many parameter sets run on the same bars (a sweep).

        The caller makes one `cache` per bars and passes it to every set, so a strategy whose sets
        share indicators (the same moving-average window) computes each once. The result must equal
        `target_positions(bars, allow_short)`; this default computes exactly that.
        """
        return self.target_positions(bars, allow_short)

    def chart_lines(self, bars: pd.DataFrame) -> dict[str, np.ndarray]:
        """The price-scale lines the rule reads (an average, a band), by label, one value per bar
        (NaN in warm-up): what a chart draws over the candles. None by default."""
        return {}

    @classmethod
    def param_space(cls) -> dict[str, ParamSpec]:
        """Same as the module-level `param_space(cls)`."""
        return param_space(cls)

    def bind_settings(self, settings: Any) -> None:
        """Receive the run's settings before targets are computed. Rule strategies need nothing;
        a strategy that reads configuration (ml_signal: the model registry root) overrides this,
        so a config file or N1V1_* variable reaches it on every path (CLI, runner, serve)."""
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"

    # --- helpers for subclasses -------------------------------------------------------------

    def columns(self, bars: pd.DataFrame, *names: str) -> list[np.ndarray]:
        """The named bar columns as contiguous float64 arrays; a clear error if one is absent."""
        split = _PRESPLIT.get(id(bars))
        if split is not None and split[0]() is bars and all(n in split[1] for n in names):
            return [split[1][n] for n in names]
        if not isinstance(bars, pd.DataFrame):
            raise StrategyError(f"{self.name}: bars must be a pandas DataFrame, got {type(bars)}")
        missing = [n for n in names if n not in bars.columns]
        if missing:
            raise StrategyError(
                f"{self.name}: bars are missing column(s) {missing}; have {list(bars.columns)}"
            )
        return [np.ascontiguousarray(bars[n].to_numpy(dtype=np.float64)) for n in names]

    def finish(self, target: np.ndarray, allow_short: bool) -> np.ndarray:
        """Clamp a state-style target to the allowed set and zero the warm-up bars."""
        out = np.asarray(target, dtype=np.int8).copy()
        if not allow_short:
            np.maximum(out, 0, out=out)
        out[: self.warmup] = 0
        return out

    def hold(
        self,
        enter_long: np.ndarray,
        exit_long: np.ndarray,
        enter_short: np.ndarray,
        exit_short: np.ndarray,
        allow_short: bool,
    ) -> np.ndarray:
        """Event signals -> held position, ignoring any event inside the warm-up."""
        signals = [
            np.array(s, dtype=np.bool_) for s in (enter_long, exit_long, enter_short, exit_short)
        ]
        for s in signals:
            s[: self.warmup] = False
        return hold_position(*signals, allow_short=allow_short)


def crossed_above(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True at t when a[t] > b[t] and a[t-1] <= b[t-1] (False at t=0 and where a value is NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=np.bool_)
    out[1:] = (a[1:] > b[1:]) & (a[:-1] <= b[:-1])
    return out


def crossed_below(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """True at t when a[t] < b[t] and a[t-1] >= b[t-1] (False at t=0 and where a value is NaN)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
    out = np.zeros(a.shape, dtype=np.bool_)
    out[1:] = (a[1:] < b[1:]) & (a[:-1] >= b[:-1])
    return out


def shift1(x: np.ndarray) -> np.ndarray:
    """x delayed by one bar (NaN at t=0): the value of the previous bar, so bar t is not in it."""
    out = np.empty_like(np.asarray(x, dtype=np.float64))
    out[0:1] = np.nan
    out[1:] = x[:-1]
    return out


def volume_confirmed(volume: np.ndarray, factor: float, period: int) -> np.ndarray:
    """volume[t] >= factor * SMA(volume, period)[t]; all True when factor == 0 (filter off)."""
    if factor == 0.0:
        return np.ones(volume.shape, dtype=np.bool_)
    return volume >= factor * ind.sma(volume, period)


def volume_filter_warmup(params: VolumeFilterParams) -> int:
    """Extra bars the volume filter needs before its mean volume exists (0 when it is off)."""
    return params.volume_period - 1 if params.volume_factor > 0.0 else 0


@njit(cache=True)
def _hold_kernel(enter_long, exit_long, enter_short, exit_short, allow_short):  # pragma: no cover
    n = enter_long.shape[0]
    out = np.zeros(n, dtype=np.int8)
    state = 0
    for t in range(n):
        el = enter_long[t]
        es = enter_short[t] and allow_short
        if state == 0:
            if el and not es:
                state = 1
            elif es and not el:
                state = -1
        elif state == 1:
            if es and not el:
                state = -1
            elif exit_long[t]:
                state = 0
        else:
            if el and not es:
                state = 1
            elif exit_short[t]:
                state = 0
        out[t] = state
    return out


def hold_position(
    enter_long: np.ndarray,
    exit_long: np.ndarray,
    enter_short: np.ndarray,
    exit_short: np.ndarray,
    allow_short: bool,
) -> np.ndarray:
    """Turn per-bar event signals into a held position (int8 array of -1/0/+1), one move per bar.

    The state machine, evaluated bar by bar from flat (enter_short counts only when allow_short):

    - flat:  enter_long -> long; enter_short -> short; both at once -> stay flat (ambiguous).
    - long:  enter_short (and not enter_long) -> short (a reversal beats a plain exit);
             else exit_long -> flat; else stay long (a repeated enter_long changes nothing).
    - short: enter_long (and not enter_short) -> long; else exit_short -> flat; else stay short.

    When allow_short is False, enter_short and exit_short are ignored and the result is in {0, 1};
    strategies whose rule says "a short signal also closes a long" put that into exit_long.
    """
    arrays = [np.ascontiguousarray(a, dtype=np.bool_) for a in (enter_long, exit_long)]
    arrays += [np.ascontiguousarray(a, dtype=np.bool_) for a in (enter_short, exit_short)]
    n = arrays[0].shape[0]
    names = ("enter_long", "exit_long", "enter_short", "exit_short")
    for name, a in zip(names, arrays, strict=True):
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"hold_position: {name} has shape {a.shape}, expected ({n},)")
    return _hold_kernel(*arrays, bool(allow_short))
