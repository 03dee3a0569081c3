"""What a trading session is made of, and the part of it that may change while it runs.

`SessionSpec` is fixed for the life of a session (symbols, strategies, settings); `LiveConfig`
holds the live-tunable settings (risk limits, strategy parameters, paused) that Serve's
`user_config` and `PUT /api/v1/config` change without a restart. Both are strict: an unknown key is
an error that names it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator

from n1v1.config import ConfigError, RiskSettings, Settings, StrictModel, format_validation_error
from n1v1.strategies.base import Strategy, StrategyError
from n1v1.strategies.registry import create_strategy, list_strategies


class StrategySlot(StrictModel):
    """One strategy the session runs; `id` names it in signals, the API and live overrides."""

    name: str = Field(min_length=1, description="built-in strategy name")
    params: dict[str, Any] = Field(default_factory=dict)
    id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("name")
    @classmethod
    def _builtin(cls, value: str) -> str:
        # Only built-ins: a strategy named by module path would import code chosen by the caller.
        if value not in list_strategies():
            raise ValueError(
                f"unknown strategy {value!r}; built-ins: {', '.join(list_strategies())}"
            )
        return value

    @property
    def slot_id(self) -> str:
        return self.id or self.name


class LiveConfig(StrictModel):
    """Live-tunable settings. `risk` holds partial RiskSettings; `strategies` maps a strategy id to
    parameter overrides (merged over the slot's own parameters)."""

    paused: bool = False
    risk: dict[str, Any] = Field(default_factory=dict)
    strategies: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def merged_with(self, update: LiveConfig | dict[str, Any]) -> LiveConfig:
        """This config with a partial update applied (dicts merge key by key)."""
        patch = update if isinstance(update, dict) else update.model_dump(exclude_unset=True)
        data = self.model_dump()
        for key, value in patch.items():
            if key == "risk":
                data["risk"] = {**data["risk"], **value}
            elif key == "strategies":
                merged = dict(data["strategies"])
                for slot, params in value.items():
                    merged[slot] = {**merged.get(slot, {}), **params}
                data["strategies"] = merged
            else:
                data[key] = value
        return LiveConfig.model_validate(data)


def effective_settings(base: Settings, live: LiveConfig) -> Settings:
    """Base settings with the live risk overrides applied; ConfigError names a bad key."""
    if not live.risk:
        return base
    risk = {**base.risk.model_dump(), **live.risk}
    try:
        return base.model_copy(update={"risk": RiskSettings.model_validate(risk)})
    except ValidationError as exc:
        lines = format_validation_error(exc, RiskSettings).splitlines()
        named = [line if line.startswith("risk.") else f"risk.{line}" for line in lines]
        raise ConfigError("\n".join(named)) from None


def build_strategies(
    slots: list[StrategySlot], live: LiveConfig, settings: Settings
) -> dict[str, Strategy]:
    """slot id -> strategy with its live parameter overrides; errors name the slot."""
    unknown = set(live.strategies) - {s.slot_id for s in slots}
    if unknown:
        known = ", ".join(s.slot_id for s in slots)
        raise ConfigError(f"strategies.{sorted(unknown)[0]}: no such strategy (running: {known})")
    out: dict[str, Strategy] = {}
    for slot in slots:
        params = {**slot.params, **live.strategies.get(slot.slot_id, {})}
        try:
            strategy = create_strategy(slot.name, params)
        except StrategyError as exc:
            raise ConfigError(f"strategies.{slot.slot_id}: {exc}") from None
        strategy.bind_settings(settings)
        out[slot.slot_id] = strategy
    return out
