"""Parameter sets from a strategy's declared space (n1v1/research/space.py): pure, no Ray.

Grids enumerate exactly the specified values, random draws stay inside the declared bounds or the
given ranges with the right types, every set passes the strategy's own Params model, and the sets
a cross-field rule rejects are dropped and counted. Mistakes name the parameter.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import pandas as pd
import pydantic
import pytest

from n1v1.research.space import (
    SweepError,
    dimensions,
    grid_sets,
    parse_dimension,
    random_sets,
)
from n1v1.research.sweep import parse_sweep_spec
from n1v1.strategies.base import Strategy, StrategyError, StrategyParams, param_space
from n1v1.strategies.oscillators import BollingerReversion
from n1v1.strategies.regime import RegimeSwitch
from n1v1.strategies.trend import SmaCross


class MixedParams(StrategyParams):
    """Every kind of parameter a space can hold, plus a cross-field rule (low < high)."""

    window: int = pydantic.Field(10, ge=2, le=50)
    low: float = pydantic.Field(0.2, ge=0.0, le=1.0)
    high: float = pydantic.Field(0.8, ge=0.0, le=1.0)
    flag: bool = False
    mode: Literal["fast", "slow", "both"] = "fast"
    label: str = "free text"

    @pydantic.model_validator(mode="after")
    def _ordered(self) -> MixedParams:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be less than high ({self.high})")
        return self


class Mixed(Strategy):
    """Always flat: only its parameter space matters here."""

    name = "mixed"
    Params = MixedParams

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        return np.zeros(len(bars), dtype=np.int8)


# -- grids -----------------------------------------------------------------------------------------
def test_grid_ranges_are_inclusive_and_unmentioned_parameters_keep_defaults():
    sets = grid_sets(BollingerReversion, {"period": "10:30:10", "k": "1.0,2.5"})
    assert [(s["period"], s["k"]) for s in sets] == [
        (10, 1.0),
        (10, 2.5),
        (20, 1.0),
        (20, 2.5),
        (30, 1.0),
        (30, 2.5),
    ]
    defaults = {n: s.default for n, s in param_space(BollingerReversion).items()}
    for s in sets:
        assert {k: s[k] for k in ("volume_factor", "volume_period")} == {
            "volume_factor": defaults["volume_factor"],
            "volume_period": defaults["volume_period"],
        }
    assert sets.dropped == 0 and sets.varied == ("period", "k")


def test_float_grid_steps_land_on_clean_values_and_include_hi():
    (dim,) = [parse_dimension(BollingerReversion, "k", "0.1:0.7:0.1")]
    assert dim.grid_values() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]


def test_grid_drops_sets_the_params_model_rejects_and_counts_them():
    sets = grid_sets(SmaCross, {"fast": "5:40:5", "slow": "10,20,30,40"})
    combos = list(itertools.product(range(5, 41, 5), (10, 20, 30, 40)))
    valid = [(f, s) for f, s in combos if f < s]
    assert [(s["fast"], s["slow"]) for s in sets] == valid
    assert sets.dropped == len(combos) - len(valid) > 0
    assert "fast" in sets.drop_reasons[0] and "slow" in sets.drop_reasons[0]
    assert f"{sets.dropped} dropped as invalid" in sets.describe()


def test_grid_without_specs_is_the_default_set():
    assert grid_sets(SmaCross).sets == [{"fast": 10, "slow": 30}]


def test_bool_and_literal_values_are_typed_and_checked():
    sets = grid_sets(Mixed, {"flag": "true,false", "mode": "slow,both"})
    assert [(s["flag"], s["mode"]) for s in sets] == [
        (True, "slow"),
        (True, "both"),
        (False, "slow"),
        (False, "both"),
    ]
    with pytest.raises(StrategyError, match=r"mode='medium' is not one of 'fast', 'slow', 'both'"):
        grid_sets(Mixed, {"mode": "fast,medium"})


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"fsat": "5"}, r"unknown parameter 'fsat' \(did you mean 'fast'\?\)"),
        ({"fast": "1:10"}, r"parameter fast=1 out of bounds \[2, 500\]"),
        ({"slow": "10,2000"}, r"parameter slow=2000 out of bounds \[3, 1000\]"),
        ({"fast": "5:x"}, r"parameter fast expects an integer, got 'x'"),
        ({"fast": "20:10"}, r"parameter fast: range '20:10' has lo > hi"),
        ({"fast": "5:20:0"}, r"parameter fast: step must be > 0"),
        ({"fast": "5:20:1:2"}, r"parameter fast: range '5:20:1:2' must be 'lo:hi'"),
    ],
)
def test_spec_mistakes_name_the_parameter(specs, message):
    with pytest.raises(StrategyError, match=message):
        grid_sets(SmaCross, specs)


def test_a_float_range_on_a_grid_needs_a_step():
    with pytest.raises(SweepError, match=r"parameter k: a float range on a grid needs a step"):
        grid_sets(BollingerReversion, {"k": "1:3"})


# -- random search ---------------------------------------------------------------------------------
def test_random_sets_respect_declared_bounds_types_and_the_params_model():
    sets = random_sets(Mixed, 300, seed=4)
    assert len(sets) == 300
    space = param_space(Mixed)
    for s in sets:
        assert isinstance(s["window"], int) and not isinstance(s["window"], bool)
        assert space["window"].low <= s["window"] <= space["window"].high
        assert isinstance(s["low"], float) and 0.0 <= s["low"] <= 1.0
        assert isinstance(s["flag"], bool)
        assert s["mode"] in ("fast", "slow", "both")
        assert s["label"] == "free text"  # free strings keep their default
        assert s["low"] < s["high"]  # the cross-field rule held for every kept set
        Mixed(s)
    # low and high drawn independently in [0, 1]: about half the draws break low < high
    assert 150 < sets.dropped < 450
    assert {s["mode"] for s in sets} == {"fast", "slow", "both"}
    assert {s["flag"] for s in sets} == {False, True}
    windows = [s["window"] for s in sets]
    assert min(windows) <= 4 and max(windows) >= 48  # the whole declared range is explored


def test_random_sets_are_seeded():
    a = random_sets(SmaCross, 20, {"fast": "2:50", "slow": "10:100"}, seed=7)
    b = random_sets(SmaCross, 20, {"fast": "2:50", "slow": "10:100"}, seed=7)
    c = random_sets(SmaCross, 20, {"fast": "2:50", "slow": "10:100"}, seed=8)
    assert a.sets == b.sets and a.dropped == b.dropped
    assert a.sets != c.sets


def test_random_sets_within_given_ranges_and_lattices():
    sets = random_sets(BollingerReversion, 200, {"period": "10:50:10", "k": "0.5:3.0"}, seed=1)
    assert {s["period"] for s in sets} <= {10, 20, 30, 40, 50}
    assert all(0.5 <= s["k"] <= 3.0 for s in sets)
    assert {s["volume_period"] for s in sets} == {20}  # not in the specs: default
    assert sets.varied == ("period", "k")


def test_random_search_refuses_a_region_with_no_valid_set():
    with pytest.raises(SweepError, match=r"only 0 of .* random draws were valid"):
        random_sets(SmaCross, 5, {"fast": "100:200", "slow": "10:50"})


def test_declared_space_skips_free_strings_and_requires_required_parameters():
    dims = dimensions(RegimeSwitch)
    assert dims["adx_period"].kind == "int" and dims["bb_k"].kind == "float"
    assert dims["trend_up"].kind == "fixed" and dims["trend_up"].value == "ema_cross"
    from n1v1.strategies.ml_signal import MLSignal

    with pytest.raises(StrategyError, match=r"parameter model has no default"):
        dimensions(MLSignal)
    assert dimensions(MLSignal, {"model": "btc"})["model"].value == "btc"


# -- the spec --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metric": "sharp"}, r"metric: unknown metric 'sharp' \(did you mean 'sharpe'\?\)"),
        ({"method": "random"}, r"n_trials: required for method=random"),
        ({"n_trials": 5}, r"n_trials: a grid runs every combination"),
        ({"top_k": "3"}, r"top_k: Input should be a valid integer"),
        ({"min_trades": -1}, r"min_trades: Input should be greater than or equal to 0"),
        ({"metod": "grid"}, r"metod: unknown key; did you mean method"),
    ],
)
def test_sweep_spec_errors_name_the_field(data, message):
    with pytest.raises(SweepError, match=message):
        parse_sweep_spec({"strategy": "sma_cross", **data})
