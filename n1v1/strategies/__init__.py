"""Strategies: the protocol (`base`), the built-ins, the registry and the regime selector.

See docs/strategies.md for every built-in's exact rule and how to plug in your own class.
"""

from n1v1.strategies.base import (
    ParamSpec,
    Strategy,
    StrategyError,
    StrategyParams,
    VolumeFilterParams,
    hold_position,
    param_space,
)
from n1v1.strategies.regime import Regime, detect_regime
from n1v1.strategies.registry import (
    create_strategy,
    get_strategy,
    list_strategies,
    parse_param_overrides,
)

__all__ = [
    "ParamSpec",
    "Regime",
    "Strategy",
    "StrategyError",
    "StrategyParams",
    "VolumeFilterParams",
    "create_strategy",
    "detect_regime",
    "get_strategy",
    "hold_position",
    "list_strategies",
    "param_space",
    "parse_param_overrides",
]
