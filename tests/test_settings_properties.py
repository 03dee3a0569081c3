"""Properties of the settings model at its boundary (n1v1/config.py): whatever a YAML file, an
`N1V1_*` variable, a Serve `user_config` or a journaled command brings in, an unknown key, a value
of the wrong type or a number that is not finite or past its bound is a ConfigError naming the
full key path, and never a setting.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from pydantic import BaseModel

from n1v1.config import ConfigError, Settings, load_settings, parse_settings
from n1v1.live.config import LiveConfig, effective_settings

NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


def _sections(model: type[BaseModel], prefix: str = "") -> dict[str, type[BaseModel]]:
    """Every settings model in the tree by its key path ("" for the root, "risk", ...); not the
    models inside a mapping (execution.instruments is keyed by symbol)."""
    out = {prefix: model}
    for name, info in model.model_fields.items():
        union = isinstance(info.annotation, types.UnionType)
        for candidate in (info.annotation, *(typing.get_args(info.annotation) if union else ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                out |= _sections(candidate, f"{prefix}.{name}".lstrip("."))
    return out


def _numeric(annotation: Any) -> type | None:
    """float or int when a field holds a number (possibly optional), else None."""
    kinds = set(typing.get_args(annotation)) if isinstance(annotation, types.UnionType) else set()
    kinds = kinds or {annotation}
    kinds.discard(type(None))
    return kinds.pop() if len(kinds) == 1 and kinds <= {int, float} else None


SECTIONS = _sections(Settings)
NUMBERS = sorted(
    (f"{path}.{name}".lstrip("."), _numeric(info.annotation))
    for path, model in SECTIONS.items()
    for name, info in model.model_fields.items()
    if _numeric(info.annotation) is not None
)
FLOATS = [path for path, kind in NUMBERS if kind is float]


def nested(path: str, value: Any) -> dict[str, Any]:
    """{"risk": {"qty": value}} from "risk.qty"; fields that need a partner get it."""
    *parents, leaf = path.split(".")
    data: dict[str, Any] = {leaf: value}
    if path == "risk.qty":
        data["sizing"] = "fixed"
    for parent in reversed(parents):
        data = {parent: data}
    return data


def problem_lines(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse_settings(data)
    return str(refused.value).splitlines()


def test_the_tree_has_numbers_to_check() -> None:
    assert {"risk.qty", "risk.max_drawdown", "backtest.cash", "execution.taker_fee"} <= set(FLOATS)
    assert len(NUMBERS) >= 35


@pytest.mark.parametrize(("path", "kind"), NUMBERS, ids=[p for p, _ in NUMBERS])
def test_every_number_in_the_settings_is_bounded_on_both_sides(path: str, kind: type) -> None:
    section, _, name = path.rpartition(".")
    schema = SECTIONS[section].model_json_schema()["properties"][name]
    options = schema.get("anyOf", [schema])
    (number,) = [o for o in options if o.get("type") in ("number", "integer")]
    assert {"minimum", "exclusiveMinimum"} & set(number), f"{path}: no lower bound"
    assert {"maximum", "exclusiveMaximum"} & set(number), f"{path}: no upper bound"


@hyp_settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(FLOATS), value=NON_FINITE)
def test_a_non_finite_number_is_refused_naming_its_key(path: str, value: float) -> None:
    lines = problem_lines(nested(path, value))
    assert lines == [f"{path}: Input should be a finite number"]


@hyp_settings(max_examples=150, deadline=None)
@given(
    path_kind=st.sampled_from(NUMBERS),
    magnitude=st.floats(min_value=1e15 + 1, max_value=1e308),
    sign=st.sampled_from([1, -1]),
)
def test_a_number_past_its_bounds_is_refused_naming_its_key(
    path_kind: tuple[str, type], magnitude: float, sign: int
) -> None:
    path, kind = path_kind
    value = kind(sign * magnitude) if kind is float else sign * int(magnitude)
    (line,) = problem_lines(nested(path, value))
    assert line.startswith(f"{path}: Input should be")


@hyp_settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(sorted(SECTIONS)),
    key=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    value=st.one_of(st.integers(), st.text(max_size=5), st.none()),
)
def test_an_unknown_key_is_refused_naming_its_full_path(path: str, key: str, value: Any) -> None:
    if key in SECTIONS[path].model_fields:
        return
    full = f"{path}.{key}".lstrip(".")
    (line,) = problem_lines(nested(full, value))
    assert line.startswith(f"{full}: unknown key")


@hyp_settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from([p for p, _ in NUMBERS]),
    value=st.one_of(
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), min_size=1, max_size=2),
        st.from_regex(r"[a-z ]{1,10}", fullmatch=True),  # not a number in any spelling
    ),
)
def test_a_value_of_the_wrong_type_is_refused_naming_its_key(path: str, value: Any) -> None:
    lines = problem_lines(nested(path, value))
    assert lines and all(line.startswith(f"{path}: ") for line in lines), lines


@hyp_settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(FLOATS), text=st.sampled_from([".inf", "-.inf", ".nan", ".NaN"]))
def test_an_environment_override_cannot_bring_an_infinity_in(path: str, text: str) -> None:
    variable = "N1V1_" + path.upper().replace(".", "__")
    env = {variable: text, **({"N1V1_RISK__SIZING": "fixed"} if path == "risk.qty" else {})}
    with pytest.raises(ConfigError) as refused:
        load_settings(env=env)
    assert str(refused.value) == f"{path}: Input should be a finite number"


@hyp_settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from([p.removeprefix("risk.") for p in FLOATS if p.startswith("risk.")]),
    value=NON_FINITE,
)
def test_a_live_risk_change_cannot_bring_an_infinity_in(name: str, value: float) -> None:
    """PUT /api/v1/config, Serve's user_config and a replayed command all go through here."""
    live = LiveConfig().merged_with(
        {"risk": {name: value, **({"sizing": "fixed"} if name == "qty" else {})}}
    )
    with pytest.raises(ConfigError) as refused:
        effective_settings(Settings(), live)
    assert str(refused.value) == f"risk.{name}: Input should be a finite number"
