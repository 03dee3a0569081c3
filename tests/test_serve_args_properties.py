"""Property tests of the `serve_config.yaml` args (n1v1/serve/args.py): whatever a config says at
any key, it is taken exactly as written or refused with an error that names that key.

The starting point is the args of the shipped serve_config.yaml (valid); each example changes one
key of the sections args.py owns (the risk and execution sections are the settings model's, see
n1v1/config.py) to an unknown key, a value of the wrong type, a non-finite number, a number out of
the key's bounds, or any text, and checks what comes back. The bounds are read from the models
themselves, so a field added later is covered too.
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import annotated_types
import hypothesis.strategies as st
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, ValidationError

from n1v1.serve.args import ApiArgs, AppArgs, EngineArgs, ModelArgs, ReplayFeedArgs

CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"
BASE: dict[str, Any] = yaml.safe_load(CONFIG.read_text())["applications"][0]["args"]
SECTIONS: dict[tuple[str, ...], type[BaseModel]] = {
    (): AppArgs,
    ("feed",): ReplayFeedArgs,
    ("engine",): EngineArgs,
    ("api",): ApiArgs,
    ("model",): ModelArgs,
}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _numeric_leaves() -> list[tuple[tuple[str, ...], type, dict[str, float]]]:
    """(path, float or int, bounds) of every number the args models hold."""
    leaves = []
    for prefix, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            if field.annotation not in (float, int):
                continue
            bounds: dict[str, float] = {}
            for rule in field.metadata:
                for kind in ("gt", "ge", "lt", "le"):
                    if isinstance(rule, getattr(annotated_types, kind.capitalize())):
                        bounds[kind] = getattr(rule, kind)
            leaves.append(((*prefix, name), field.annotation, bounds))
    return leaves


NUMBERS = _numeric_leaves()


def test_every_number_of_the_args_has_both_bounds() -> None:
    """A number with no upper bound takes 1e308, which is as good as switching a limit off."""
    assert len(NUMBERS) >= 15
    unbounded = [
        ".".join(path)
        for path, _, bounds in NUMBERS
        if not ({"gt", "ge"} & set(bounds) and {"lt", "le"} & set(bounds))
    ]
    assert unbounded == []


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return doc


def key_of(error: dict[str, Any]) -> tuple[str, ...]:
    """An error's location as the config spells it: without the feed kind pydantic inserts."""
    loc = tuple(str(part) for part in error["loc"])
    if len(loc) >= 2 and loc[0] == "feed" and loc[1] in ("replay", "ccxt"):
        loc = (loc[0], *loc[2:])
    return loc


def refused_at(doc: dict[str, Any], path: tuple[str, ...]) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        AppArgs.model_validate(doc)
    errors = refused.value.errors()
    assert [key_of(e) for e in errors] == [path], refused.value
    assert ".".join(path) in str(refused.value).replace(".replay.", ".")
    assert "input_value" not in str(refused.value)  # values are never echoed (a URL's password)
    return refused.value


def value_at(args: AppArgs, path: tuple[str, ...]) -> Any:
    node: Any = args
    for key in path:
        node = getattr(node, key)
    return node


def test_the_shipped_config_is_valid() -> None:
    AppArgs.model_validate(BASE)


leaf = st.sampled_from(NUMBERS)


@FAST
@given(leaf, st.sampled_from([math.inf, -math.inf, math.nan]))
def test_a_non_finite_number_is_refused_naming_its_key(number: Any, value: float) -> None:
    path, kind, _ = number
    error = refused_at(with_value(path, value), path)
    assert error.errors()[0]["type"] == ("finite_number" if kind is float else "int_type")


wrong_types = st.one_of(
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.integers(0, 100).map(str),  # "20": a number as text is not a number
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


@FAST
@given(leaf, wrong_types)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(number: Any, value: Any) -> None:
    path, _, _ = number
    refused_at(with_value(path, value), path)


@FAST
@given(st.sampled_from([n for n in NUMBERS if n[1] is int]), st.floats(allow_nan=False))
def test_an_integer_key_takes_no_float_not_even_a_whole_one(number: Any, value: float) -> None:
    path, _, _ = number
    refused_at(with_value(path, value), path)


def _outside(kind: type, bounds: dict[str, float]) -> st.SearchStrategy[Any]:
    sides = []
    for name, bound in bounds.items():
        above = name in ("lt", "le")
        strict = name in ("lt", "gt")  # the bound itself is outside
        if kind is int:
            edge = math.floor(bound) if above else math.ceil(bound)
            if not strict:
                edge = edge + 1 if above else edge - 1
            sides.append(st.integers(min_value=edge) if above else st.integers(max_value=edge))
        else:
            sides.append(
                st.floats(
                    min_value=bound if above else None,
                    max_value=None if above else bound,
                    exclude_min=above and not strict,
                    exclude_max=not above and not strict,
                    allow_nan=False,
                    allow_infinity=False,
                )
            )
    return st.one_of(sides)


@FAST
@given(st.data())
def test_a_number_out_of_its_bounds_is_refused_naming_its_key(data: st.DataObject) -> None:
    path, kind, bounds = data.draw(leaf)
    value = data.draw(_outside(kind, bounds))
    refused_at(with_value(path, value), path)


def _inside(kind: type, bounds: dict[str, float]) -> st.SearchStrategy[Any]:
    low = bounds.get("ge", bounds.get("gt"))
    high = bounds.get("le", bounds.get("lt"))
    if kind is int:
        return st.integers(
            min_value=math.ceil(low + ("gt" in bounds)),
            max_value=math.floor(high - ("lt" in bounds)),
        )
    return st.floats(
        min_value=low,
        max_value=high,
        exclude_min="gt" in bounds,
        exclude_max="lt" in bounds,
        allow_nan=False,
    )


@FAST
@given(st.data())
def test_a_number_within_its_bounds_is_taken_exactly_as_written(data: st.DataObject) -> None:
    path, kind, bounds = data.draw(leaf)
    value = data.draw(_inside(kind, bounds))
    taken = value_at(AppArgs.model_validate(with_value(path, value)), path)
    assert taken == value and type(taken) is kind


@FAST
@given(
    st.sampled_from(sorted(SECTIONS)),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12),
)
def test_an_unknown_key_is_refused_by_its_path(section: tuple[str, ...], key: str) -> None:
    if key in SECTIONS[section].model_fields:
        key += "_x"  # a misspelling of a real key
    if section == ("feed",) and key == "kind_x":
        key = "kinds"
    path = (*section, key)
    error = refused_at(with_value(path, 1), path)
    assert error.errors()[0]["type"] == "extra_forbidden"


TEXT_KEYS = [
    ("run_id",),
    ("currency",),
    ("model_root",),
    ("feed", "timeframe"),
    ("feed", "start"),
    ("feed", "end"),
    ("feed", "after_replay"),
    ("engine", "on_prediction_failure"),
]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TEXT_KEYS), st.text(max_size=24))
def test_any_text_is_taken_as_written_or_refused_naming_its_key(
    path: tuple[str, ...], text: str
) -> None:
    """No text makes validation fail any other way (an OverflowError from a date, a crash)."""
    doc = with_value(path, text)
    try:
        args = AppArgs.model_validate(doc)
    except ValidationError as exc:
        (error,) = exc.errors()
        # A check of the whole model or section (the account currency against the symbols'
        # quotes, start after end) is located there, and its message names the key.
        where = key_of(error)
        assert where == path or (where == path[: len(where)] and path[-1] in error["msg"]), exc
        return
    assert value_at(args, path) == text


def test_run_id_and_text_rules_in_words() -> None:
    """The rules the property above explores, for one value each."""
    refused_at(with_value(("run_id",), "paper\nforged log line"), ("run_id",))
    refused_at(with_value(("feed", "timeframe"), "banana"), ("feed", "timeframe"))
    refused_at(with_value(("feed", "start"), "2018-13-45"), ("feed", "start"))
    with pytest.raises(ValidationError, match="start 2018-04-07 is after end 2018-04-06"):
        AppArgs.model_validate(with_value(("feed", "start"), "2018-04-07"))
    AppArgs.model_validate(with_value(("feed", "start"), "2018-04-06T12:00"))  # end covers its day


@FAST
@given(st.sampled_from(BASE["feed"]["datasets"]))
def test_a_dataset_listed_twice_is_refused(name: str) -> None:
    feed = {**BASE["feed"], "datasets": [*BASE["feed"]["datasets"], name]}
    with pytest.raises(ValidationError, match=re.escape(f"({name!r}) repeats item")):
        AppArgs.model_validate({**BASE, "feed": feed})


def _not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


@FAST
@given(
    st.sampled_from(["fast", "slow"]),
    st.one_of(
        st.text(max_size=4).filter(_not_a_number),
        st.sampled_from([math.inf, -math.inf, math.nan]),
        st.integers(max_value=1),
        st.integers(min_value=100_000),
    ),
)
def test_a_strategy_parameter_is_checked_when_the_config_is(param: str, value: Any) -> None:
    """A bad strategy parameter fails `serve deploy`, not every Engine replica in a loop (what
    a parameter accepts is the strategy's own rule: n1v1/strategies)."""
    slots = copy.deepcopy(BASE["strategies"])
    slots[0]["params"][param] = value
    with pytest.raises(
        ValidationError, match=rf"strategies\.0\.params: ema_cross: parameter {param}"
    ):
        AppArgs.model_validate({**BASE, "strategies": slots})
