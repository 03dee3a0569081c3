"""Parameter sets from a strategy's declared space: grids, seeded random draws, search dimensions.

A strategy declares its tunable parameters once, as a pydantic model with bounds
(`n1v1.strategies.base.param_space`). A sweep asks for a region of that space per parameter:

- `"lo:hi:step"`: every step from lo to hi, both inclusive (`"lo:hi"` for an int means step 1;
  a float range needs a step on a grid, and is continuous for random and Bayesian search);
- `"a,b,c"`: those values (typed by the field: ints, floats, true/false, a Literal's choices);
- a single value: the parameter is fixed.

Parameters not mentioned keep their defaults. Random and Bayesian search with no specs at all
explore every parameter with declared bounds (ints, floats, bools and Literal choices); free
strings (e.g. regime_switch's sub-strategy names) keep their defaults.

Every set is validated by the strategy's own Params model, so a sweep never runs a set the strategy
would refuse; sets rejected by a cross-field rule (sma_cross: fast < slow) are dropped and counted
in `ParamSets.dropped`. A value outside a field's own bounds is an error before anything runs,
naming the parameter and its bounds. Pure: no Ray, no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import pydantic

from n1v1.strategies.base import (
    ParamSpec,
    Strategy,
    StrategyError,
    param_space,
    unknown_param_message,
)
from n1v1.strategies.registry import parse_param_overrides

__all__ = [
    "Dimension",
    "ParamSets",
    "SweepError",
    "dimensions",
    "grid_sets",
    "parse_dimension",
    "random_sets",
    "validate_sets",
]

ParamValue = str | int | float | bool
SpecValue = ParamValue | Sequence[ParamValue]

# Random search draws until it has n valid sets; a region where almost every draw is invalid
# (e.g. fast's range entirely above slow's) is reported instead of looping for ever.
_MAX_DRAWS_PER_SET = 50
# A float grid step that lands within this relative distance of hi still includes hi.
_STEP_TOLERANCE = 1e-9


class SweepError(ValueError):
    """A sweep cannot run as asked (spec, checkpoint or data); the message names the cause."""


@dataclass(frozen=True, slots=True)
class Dimension:
    """The region of one parameter a search explores.

    kind "int"/"float": [low, high] inclusive, on a lattice of `step` when step is set (a float
    range without a step is continuous); "choice": one of `choices`; "fixed": always `value`.
    """

    name: str
    kind: Literal["int", "float", "choice", "fixed"]
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None

    def grid_values(self) -> list[Any]:
        """Every value of a grid along this dimension (a continuous range has none)."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "choice":
            return list(self.choices)
        if self.step is None and self.kind == "int":
            return _lattice(self.low, self.high, 1, True)
        if self.step is None:
            raise SweepError(
                f"parameter {self.name}: a float range on a grid needs a step "
                f"('{self.low}:{self.high}:STEP')"
            )
        return _lattice(self.low, self.high, self.step, self.kind == "int")

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn uniformly from the region."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "choice":
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.step is not None:
            values = self.grid_values()
            return values[int(rng.integers(len(values)))]
        if self.kind == "int":
            return int(rng.integers(int(self.low), int(self.high) + 1))  # type: ignore[arg-type]
        return float(rng.uniform(float(self.low), float(self.high)))  # type: ignore[arg-type]

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.name}={self.value}"
        if self.kind == "choice":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        step = f" step {self.step}" if self.step is not None else ""
        return f"{self.name} in [{self.low}, {self.high}]{step}"


@dataclass(frozen=True)
class ParamSets:
    """Validated parameter sets (every parameter, defaults filled in) and what was dropped."""

    strategy: str
    sets: list[dict[str, Any]]
    dropped: int = 0
    varied: tuple[str, ...] = ()
    drop_reasons: tuple[str, ...] = field(default_factory=tuple)  # distinct reasons, first 5

    def __len__(self) -> int:
        return len(self.sets)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.sets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.sets[i]

    def describe(self) -> str:
        """'120 parameter sets (fast x slow); 30 dropped by sma_cross: fast (40) must be ...'."""
        varied = f" ({' x '.join(self.varied)})" if self.varied else ""
        text = f"{len(self.sets):,} parameter set{'s' * (len(self.sets) != 1)}{varied}"
        if self.dropped:
            why = f": {self.drop_reasons[0]}" if self.drop_reasons else ""
            text += f"; {self.dropped:,} dropped as invalid{why}"
        return text


def _label(strategy_cls: type[Strategy]) -> str:
    return getattr(strategy_cls, "name", strategy_cls.__name__)


def _lattice(low: Any, high: Any, step: Any, integer: bool) -> list[Any]:
    if integer:
        return list(range(int(low), int(high) + 1, int(step)))
    count = math.floor((float(high) - float(low)) / float(step) * (1 + _STEP_TOLERANCE)) + 1
    # round away the float noise of low + i*step (0.1 + 2*0.1 = 0.30000000000000004)
    return [min(round(float(low) + i * float(step), 12), float(high)) for i in range(count)]


def _field_adapter(strategy_cls: type[Strategy], name: str) -> pydantic.TypeAdapter[Any]:
    info = strategy_cls.Params.model_fields[name]
    if not info.metadata:
        return pydantic.TypeAdapter(info.annotation)
    return pydantic.TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[misc]


def _typed(strategy_cls: type[Strategy], name: str, raw: Any) -> Any:
    """One value of parameter `name`: strings typed like CLI overrides, then checked against the
    field's own bounds/choices (not cross-field rules, which depend on the whole set)."""
    if isinstance(raw, str):
        value = parse_param_overrides(strategy_cls, [f"{name}={raw}"])[name]
    else:
        value = raw
    spec = param_space(strategy_cls)[name]
    try:
        checked = _field_adapter(strategy_cls, name).validate_python(value)
    except pydantic.ValidationError:
        raise StrategyError(_out_of_bounds(strategy_cls, name, spec, value)) from None
    if spec.type is int and isinstance(checked, float) and checked.is_integer():
        checked = int(checked)
    return checked


def _out_of_bounds(strategy_cls: type[Strategy], name: str, spec: ParamSpec, value: Any) -> str:
    label = _label(strategy_cls)
    if spec.choices:
        return (
            f"{label}: parameter {name}={value!r} is not one of "
            f"{', '.join(map(repr, spec.choices))}"
        )
    if spec.low is not None or spec.high is not None:
        return f"{label}: parameter {name}={value!r} out of bounds [{spec.low}, {spec.high}]"
    return f"{label}: parameter {name}={value!r} is not a valid {spec.type.__name__}"


def _check_name(strategy_cls: type[Strategy], name: str) -> ParamSpec:
    space = param_space(strategy_cls)
    if name not in space:
        raise StrategyError(unknown_param_message(_label(strategy_cls), name, list(space)))
    return space[name]


def parse_dimension(strategy_cls: type[Strategy], name: str, spec: SpecValue) -> Dimension:
    """The Dimension a spec stands for: "lo:hi[:step]", "a,b,c", a list of values or one value."""
    pspec = _check_name(strategy_cls, name)
    label = _label(strategy_cls)
    if isinstance(spec, str) and ":" in spec:
        parts = [p.strip() for p in spec.split(":")]
        if len(parts) not in (2, 3) or not all(parts):
            raise StrategyError(
                f"{label}: parameter {name}: range {spec!r} must be 'lo:hi' or 'lo:hi:step'"
            )
        if pspec.type not in (int, float):
            raise StrategyError(
                f"{label}: parameter {name} is a {pspec.type.__name__}; a range needs a "
                f"number, give values as 'a,b'"
            )
        low, high = _typed(strategy_cls, name, parts[0]), _typed(strategy_cls, name, parts[1])
        if low > high:
            raise StrategyError(f"{label}: parameter {name}: range {spec!r} has lo > hi")
        step = None
        if len(parts) == 3:
            step = parse_param_overrides(strategy_cls, [f"{name}={parts[2]}"])[name]
            if not step > 0:
                raise StrategyError(f"{label}: parameter {name}: step must be > 0, got {step}")
        if low == high:
            return Dimension(name, "fixed", value=low)
        kind = "int" if pspec.type is int else "float"
        return Dimension(name, kind, low=low, high=high, step=step)
    if isinstance(spec, str) and "," in spec:
        values: list[Any] = [p.strip() for p in spec.split(",")]
        if not all(values):
            raise StrategyError(f"{label}: parameter {name}: empty value in {spec!r}")
    elif isinstance(spec, Sequence) and not isinstance(spec, str):
        values = list(spec)
        if not values:
            raise StrategyError(f"{label}: parameter {name}: empty list of values")
    else:
        return Dimension(name, "fixed", value=_typed(strategy_cls, name, spec))
    typed = list(dict.fromkeys(_typed(strategy_cls, name, v) for v in values))
    if len(typed) == 1:
        return Dimension(name, "fixed", value=typed[0])
    return Dimension(name, "choice", choices=tuple(typed))


def _declared(name: str, spec: ParamSpec, label: str) -> Dimension:
    """The full declared range of one parameter (what random/Bayes explore without specs)."""
    if spec.required:
        raise StrategyError(
            f"{label}: parameter {name} has no default; fix it in the sweep, e.g. {name}=VALUE"
        )
    if spec.type is bool:
        return Dimension(name, "choice", choices=(False, True))
    if spec.choices:
        return Dimension(name, "choice", choices=tuple(spec.choices))
    if spec.type in (int, float) and spec.low is not None and spec.high is not None:
        kind = "int" if spec.type is int else "float"
        return Dimension(name, kind, low=spec.low, high=spec.high)
    return Dimension(name, "fixed", value=spec.default)


def _defaults(strategy_cls: type[Strategy]) -> dict[str, Dimension]:
    label = _label(strategy_cls)
    out = {}
    for name, spec in param_space(strategy_cls).items():
        if spec.required:
            raise StrategyError(
                f"{label}: parameter {name} has no default; give it, e.g. {name}=VALUE"
            )
        out[name] = Dimension(name, "fixed", value=spec.default)
    return out


def dimensions(
    strategy_cls: type[Strategy], specs: Mapping[str, SpecValue] | None = None
) -> dict[str, Dimension]:
    """name -> Dimension for every parameter of the strategy, in declaration order.

    With specs: the given parameters as specified, every other one fixed at its default. Without:
    the whole declared space (see the module docstring).
    """
    space = param_space(strategy_cls)
    label = _label(strategy_cls)
    specs = dict(specs or {})
    for name in specs:
        _check_name(strategy_cls, name)
    out: dict[str, Dimension] = {}
    for name, spec in space.items():
        if name in specs:
            out[name] = parse_dimension(strategy_cls, name, specs[name])
        elif not specs:
            out[name] = _declared(name, spec, label)
        elif spec.required:
            raise StrategyError(
                f"{label}: parameter {name} has no default; give it, e.g. {name}=VALUE"
            )
        else:
            out[name] = Dimension(name, "fixed", value=spec.default)
    return out


def validate_sets(
    strategy_cls: type[Strategy], candidates: Sequence[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """(valid sets as full dumps, indices of the rejected candidates, distinct reasons)."""
    from n1v1.strategies.base import format_validation_error

    valid: list[dict[str, Any]] = []
    rejected: list[int] = []
    reasons: dict[str, None] = {}
    label = _label(strategy_cls)
    for i, candidate in enumerate(candidates):
        try:
            valid.append(strategy_cls.Params(**candidate).model_dump())
        except pydantic.ValidationError as err:
            rejected.append(i)
            if len(reasons) < 5:
                reasons[format_validation_error(label, strategy_cls.Params, err)] = None
    return valid, rejected, list(reasons)


def grid_sets(
    strategy_cls: type[Strategy], specs: Mapping[str, SpecValue] | None = None
) -> ParamSets:
    """Every combination of the specified values (others at their defaults), valid ones only.

    Order: the cartesian product in the strategy's declaration order, the last parameter varying
    fastest, so set_id = position is stable for a given spec.
    """
    dims = dimensions(strategy_cls, specs) if specs else _defaults(strategy_cls)
    axes = {name: dim.grid_values() for name, dim in dims.items()}
    candidates = [
        dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())
    ]
    valid, rejected, reasons = validate_sets(strategy_cls, candidates)
    varied = tuple(name for name, values in axes.items() if len(values) > 1)
    return ParamSets(_label(strategy_cls), valid, len(rejected), varied, tuple(reasons))


def random_sets(
    strategy_cls: type[Strategy],
    n: int,
    specs: Mapping[str, SpecValue] | None = None,
    seed: int = 0,
) -> ParamSets:
    """`n` valid sets drawn uniformly from the region (rejection sampling: draws the Params model
    refuses are redrawn and counted in `dropped`). Same seed and specs -> the same sets."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise SweepError(f"n_trials: must be an integer >= 1, got {n!r}")
    dims = dimensions(strategy_cls, specs)
    rng = np.random.default_rng(seed)
    sets: list[dict[str, Any]] = []
    dropped = 0
    reasons: dict[str, None] = {}
    max_draws = n * _MAX_DRAWS_PER_SET
    draws = 0
    while len(sets) < n:
        if draws >= max_draws:
            raise SweepError(
                f"{_label(strategy_cls)}: only {len(sets)} of {draws:,} random draws were valid "
                f"parameter sets ({next(iter(reasons), '')}); narrow the ranges"
            )
        batch = [{name: d.sample(rng) for name, d in dims.items()} for _ in range(n - len(sets))]
        draws += len(batch)
        valid, rejected, why = validate_sets(strategy_cls, batch)
        sets.extend(valid)
        dropped += len(rejected)
        reasons.update(dict.fromkeys(why))
    varied = tuple(name for name, d in dims.items() if d.kind != "fixed")
    return ParamSets(_label(strategy_cls), sets, dropped, varied, tuple(list(reasons)[:5]))
