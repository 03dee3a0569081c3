"""Find strategies by name (built-ins) or import path (your own), build them, parse CLI overrides.

Built-ins are listed explicitly rather than discovered through `Strategy.__subclasses__()`, so what
`list_strategies()` shows never depends on which modules happen to have been imported.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

from n1v1.strategies.base import Strategy, StrategyError, param_space, unknown_param_message
from n1v1.strategies.breakouts import AtrBreakout, DonchianBreakout, Keltner
from n1v1.strategies.ml_signal import MLSignal
from n1v1.strategies.oscillators import BollingerReversion, Rsi, Stochastic
from n1v1.strategies.regime import RegimeSwitch
from n1v1.strategies.trend import BuyAndHold, EmaCross, Macd, SmaCross
from n1v1.strategies.volume import ObvTrend, VwapPullback

__all__ = [
    "StrategyError",
    "create_strategy",
    "get_strategy",
    "list_strategies",
    "parse_param_overrides",
]

_BUILTINS: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        SmaCross,
        BuyAndHold,
        EmaCross,
        Macd,
        Rsi,
        Stochastic,
        BollingerReversion,
        DonchianBreakout,
        AtrBreakout,
        Keltner,
        ObvTrend,
        VwapPullback,
        RegimeSwitch,
        MLSignal,
    )
}


def list_strategies() -> list[str]:
    """Names of the built-in strategies, sorted."""
    return sorted(_BUILTINS)


def _import_strategy(path: str) -> type[Strategy]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise StrategyError(
            f"bad strategy import path {path!r}: expected 'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # any import-time failure of user code is reported, not swallowed
        raise StrategyError(
            f"cannot import module {module_name!r} for strategy {path!r}: "
            f"{type(err).__name__}: {err}"
        ) from err
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise StrategyError(
            f"module {module_name!r} has no attribute {attr!r} (strategy {path!r})"
        ) from None
    if not (inspect.isclass(obj) and issubclass(obj, Strategy)):
        raise StrategyError(f"{path!r} is not a Strategy subclass (got {obj!r})")
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise StrategyError(f"{path!r} is abstract: it does not implement {missing}")
    if not isinstance(getattr(obj, "name", None), str):
        raise StrategyError(f"{path!r} must define a class attribute `name: str`")
    return obj


def get_strategy(name_or_path: str) -> type[Strategy]:
    """A strategy class: a built-in name ("sma_cross") or a "package.module:ClassName" path."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise StrategyError(f"strategy must be a non-empty string, got {name_or_path!r}")
    key = name_or_path.strip()
    if ":" in key:
        return _import_strategy(key)
    if key in _BUILTINS:
        return _BUILTINS[key]
    close = difflib.get_close_matches(key, list(_BUILTINS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    dotted = "; for your own class use 'package.module:ClassName'" if "." in key else ""
    raise StrategyError(
        f"unknown strategy {key!r}{hint}; known strategies: {', '.join(list_strategies())}{dotted}"
    )


def create_strategy(name_or_path: str, params: Mapping[str, Any] | None = None) -> Strategy:
    """Look up a strategy and build it with validated parameters (defaults for those not given)."""
    return get_strategy(name_or_path)(params)


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(strategy: str, name: str, kind: type, raw: str) -> Any:
    text = raw.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise StrategyError(
            f"{strategy}: parameter {name} expects a boolean (true/false), got {raw!r}"
        )
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise StrategyError(
                f"{strategy}: parameter {name} expects an integer, got {raw!r}"
            ) from None
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise StrategyError(
                f"{strategy}: parameter {name} expects a number, got {raw!r}"
            ) from None
        if not math.isfinite(value):
            raise StrategyError(f"{strategy}: parameter {name} must be finite, got {raw!r}")
        return value
    return text


def parse_param_overrides(cls: type[Strategy], overrides: Iterable[str]) -> dict[str, Any]:
    """["fast=10", "k=2.5", "flag=true"] -> {"fast": 10, "k": 2.5, "flag": True}, typed by field.

    Bounds and cross-field rules are checked when the strategy is built (`create_strategy`).
    """
    if isinstance(overrides, str):
        raise StrategyError("parameter overrides must be a list of 'name=value' strings")
    space = param_space(cls)
    label = getattr(cls, "name", cls.__name__)
    out: dict[str, Any] = {}
    for item in overrides:
        name, sep, raw = str(item).partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise StrategyError(
                f"{label}: malformed parameter override {item!r}: expected 'name=value'"
            )
        if name not in space:
            raise StrategyError(unknown_param_message(label, name, list(space)))
        if name in out:
            raise StrategyError(f"{label}: parameter {name} given more than once")
        out[name] = _coerce(label, name, space[name].type, raw)
    return out
