"""Registry, parameter validation, param_space and CLI overrides: errors a user can act on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic
import pytest

from n1v1.strategies import (
    ParamSpec,
    Strategy,
    StrategyError,
    StrategyParams,
    create_strategy,
    get_strategy,
    list_strategies,
    param_space,
    parse_param_overrides,
)
from n1v1.strategies.base import needs_parameters
from n1v1.strategies.trend import SmaCross, SmaCrossParams

BUILTINS = {
    "atr_breakout",
    "ml_signal",
    "bollinger_reversion",
    "buy_and_hold",
    "donchian_breakout",
    "ema_cross",
    "keltner",
    "macd",
    "obv_trend",
    "regime_switch",
    "rsi",
    "sma_cross",
    "stochastic",
    "vwap_pullback",
}


class CloseAboveOpen(Strategy):
    """A user strategy defined outside the package: long when the bar closed above its open."""

    name = "close_above_open"

    class Params(StrategyParams):
        min_gap: float = pydantic.Field(0.0, ge=0.0, le=1.0, description="fractional gap")
        flip: bool = pydantic.Field(False, description="trade the opposite way")

    def target_positions(self, bars: pd.DataFrame, allow_short: bool = False) -> np.ndarray:
        close, open_ = self.columns(bars, "close", "open")
        up = close > open_ * (1.0 + self.params.min_gap)
        return self.finish(np.where(up != self.params.flip, 1, -1), allow_short)


class NotAStrategy:
    pass


def test_list_strategies_has_every_builtin_sorted():
    names = list_strategies()
    assert set(names) == BUILTINS
    assert names == sorted(names)


def test_unknown_name_lists_the_known_ones_and_suggests():
    with pytest.raises(StrategyError) as err:
        get_strategy("sma_crosss")
    msg = str(err.value)
    assert "unknown strategy 'sma_crosss'" in msg and "did you mean 'sma_cross'" in msg
    for name in BUILTINS:
        assert name in msg


def test_import_path_loads_a_user_class():
    cls = get_strategy(f"{__name__}:CloseAboveOpen")
    assert cls is CloseAboveOpen
    strategy = create_strategy(f"{__name__}:CloseAboveOpen", {"flip": True})
    bars = pd.DataFrame(
        {"open": [1.0, 2.0], "high": [2.0, 2.0], "low": [1.0, 1.0], "close": [2.0, 1.0]},
        index=pd.date_range("2024", periods=2, freq="D", tz="UTC"),
    )
    # bar 0 closed up, bar 1 down; flipped: -1 (-> 0 long-only), +1.
    assert strategy.target_positions(bars).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("no_such_pkg.mod:Thing", "cannot import module 'no_such_pkg.mod'"),
        ("n1v1.strategies.trend:NoSuchClass", "has no attribute 'NoSuchClass'"),
        (f"{__name__}:NotAStrategy", "is not a Strategy subclass"),
        ("n1v1.strategies.base:Strategy", "is abstract"),
        (":SmaCross", "expected 'package.module:ClassName'"),
        ("n1v1.strategies.trend.SmaCross", "use 'package.module:ClassName'"),
    ],
)
def test_bad_import_paths_say_what_failed(path, fragment):
    with pytest.raises(StrategyError) as err:
        get_strategy(path)
    assert fragment in str(err.value)


def test_out_of_bounds_names_parameter_value_and_bounds():
    with pytest.raises(StrategyError) as err:
        create_strategy("sma_cross", {"fast": 0})
    assert str(err.value) == "sma_cross: parameter fast=0 out of bounds [2, 500]"
    with pytest.raises(
        StrategyError, match=r"rsi: parameter overbought=101 out of bounds \[0.0, 100.0\]"
    ):
        create_strategy("rsi", {"overbought": 101})
    with pytest.raises(StrategyError, match=r"parameter k=nan out of bounds"):
        create_strategy("bollinger_reversion", {"k": float("nan")})


def test_cross_field_rules_name_both_fields():
    with pytest.raises(
        StrategyError, match=r"sma_cross: fast \(30\) must be less than slow \(10\)"
    ):
        create_strategy("sma_cross", {"fast": 30, "slow": 10})
    with pytest.raises(StrategyError, match=r"oversold \(80.0\) must be less than overbought"):
        create_strategy("stochastic", {"oversold": 80, "overbought": 20})
    with pytest.raises(StrategyError, match=r"exit_band \(0.001\) must be greater than band"):
        create_strategy("vwap_pullback", {"exit_band": 0.001})


def test_unknown_parameter_is_named_with_suggestion_and_valid_list():
    with pytest.raises(StrategyError) as err:
        create_strategy("sma_cross", {"fsat": 5})
    assert str(err.value) == (
        "sma_cross: unknown parameter 'fsat' (did you mean 'fast'?); valid parameters: fast, slow"
    )


def test_params_object_and_defaults():
    assert create_strategy("sma_cross").params == SmaCrossParams(fast=10, slow=30)
    assert SmaCross(SmaCrossParams(fast=5, slow=8)).params.fast == 5
    with pytest.raises(StrategyError, match="expected SmaCrossParams"):
        SmaCross(get_strategy("rsi").Params())
    with pytest.raises(pydantic.ValidationError):  # frozen: parameters cannot drift
        create_strategy("sma_cross").params.fast = 3  # type: ignore[misc]


def test_param_space_reads_the_pydantic_bounds():
    space = param_space(SmaCross)
    assert space["fast"] == ParamSpec(int, 2, 500, 10, space["fast"].description)
    assert space["slow"].low == 3 and space["slow"].high == 1000 and space["slow"].default == 30
    assert SmaCross.param_space() == space
    user = param_space(CloseAboveOpen)
    assert (user["min_gap"].type, user["min_gap"].low, user["min_gap"].high) == (float, 0.0, 1.0)
    assert (user["flip"].type, user["flip"].low, user["flip"].high) == (bool, False, True)
    keltner = param_space(get_strategy("keltner"))
    assert keltner["volume_factor"].default == 0.0  # the volume filter is off by default
    assert set(keltner) == {"period", "atr_period", "multiple", "volume_factor", "volume_period"}


def test_every_numeric_builtin_parameter_has_bounds_and_a_valid_default():
    for name in list_strategies():
        cls = get_strategy(name)
        for pname, spec in param_space(cls).items():
            if spec.type in (int, float):
                assert spec.low is not None and spec.high is not None, (name, pname)
                if spec.default is not None:  # required, or optional and unset by default
                    assert spec.low <= spec.default <= spec.high, (name, pname)
        if not needs_parameters(cls):
            cls()  # the defaults pass every cross-field rule


def test_parse_param_overrides_coerces_by_field_type():
    out = parse_param_overrides(CloseAboveOpen, ["min_gap=0.25", "flip=true"])
    assert out == {"min_gap": 0.25, "flip": True}
    assert parse_param_overrides(SmaCross, [" fast = 12 ", "slow=40"]) == {"fast": 12, "slow": 40}
    assert parse_param_overrides(get_strategy("regime_switch"), ["range=rsi"]) == {"range": "rsi"}


def test_param_space_reports_optional_and_required_parameters():
    space = param_space(get_strategy("ml_signal"))
    assert space["model"].required and space["model"].default is None
    assert space["threshold"].type is float and not space["threshold"].required
    assert needs_parameters(get_strategy("ml_signal"))
    assert not needs_parameters(get_strategy("sma_cross"))


def test_regime_switch_refuses_a_sub_strategy_with_required_parameters():
    with pytest.raises(StrategyError, match="range='ml_signal': that strategy has required"):
        create_strategy("regime_switch", {"range": "ml_signal"})
    assert parse_param_overrides(CloseAboveOpen, ["flip=OFF"]) == {"flip": False}


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (["fast"], "malformed parameter override 'fast': expected 'name=value'"),
        (["=3"], "malformed parameter override '=3'"),
        (["fast="], "malformed parameter override 'fast='"),
        (["fats=3"], "unknown parameter 'fats' (did you mean 'fast'?)"),
        (["fast=ten"], "parameter fast expects an integer, got 'ten'"),
        (["slow=30.5"], "parameter slow expects an integer, got '30.5'"),
        (["fast=3", "fast=4"], "parameter fast given more than once"),
    ],
)
def test_parse_param_overrides_errors(items, fragment):
    with pytest.raises(StrategyError) as err:
        parse_param_overrides(SmaCross, items)
    assert fragment in str(err.value)


def test_parse_param_overrides_float_and_bool_errors():
    with pytest.raises(StrategyError, match="parameter min_gap expects a number, got 'x'"):
        parse_param_overrides(CloseAboveOpen, ["min_gap=x"])
    with pytest.raises(StrategyError, match="parameter min_gap must be finite"):
        parse_param_overrides(CloseAboveOpen, ["min_gap=inf"])
    with pytest.raises(StrategyError, match=r"parameter flip expects a boolean \(true/false\)"):
        parse_param_overrides(CloseAboveOpen, ["flip=maybe"])


def test_overrides_then_create_checks_bounds():
    params = parse_param_overrides(SmaCross, ["fast=1"])
    with pytest.raises(StrategyError, match=r"fast=1 out of bounds \[2, 500\]"):
        create_strategy("sma_cross", params)


def test_docs_describe_every_builtin():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "strategies.md").read_text()
    for name in list_strategies():
        assert f"### {name}" in doc, f"docs/strategies.md has no section for {name}"
