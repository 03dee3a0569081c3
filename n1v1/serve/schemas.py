"""Request bodies of the HTTP API. Strict: an unknown or misspelt field is a 422 that names it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PauseBody(Body):
    reason: str = Field("", max_length=500)


class ResumeBody(Body):
    reset_kill_switch: bool = False


class KillSwitchBody(Body):
    reason: str = Field(min_length=1, max_length=500, description="why, for the journal")


class OrderBody(Body):
    """A manual market order (docs/execution.md, "Manual orders")."""

    symbol: str = Field(min_length=1, max_length=64)
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0, allow_inf_nan=False)
    resize: bool = Field(
        False, description="cut an order over a limit, the cash or the lot instead of a 409"
    )
    reverse: bool = Field(
        False, description="an order larger than the position opens the other side with the rest"
    )


class ConfigBody(Body):
    """A partial update of the live-tunable settings (merged into the current ones)."""

    paused: bool | None = None
    risk: dict[str, Any] | None = None
    strategies: dict[str, dict[str, Any]] | None = None

    def patch(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class PredictBody(Body):
    model: str = Field(min_length=1, max_length=64, description="registry model name")
    version: str | None = Field(
        None,
        pattern=r"^(v[0-9]{4}|latest)$",
        description="a version such as v0001, or latest (default: the promoted version)",
    )
    rows: list[list[float]] = Field(
        min_length=1, max_length=4096, description="raw feature rows, in the card's order"
    )


class BacktestBody(Body):
    dataset: str = Field(min_length=1, description="bundled dataset name")
    strategy: str = Field(min_length=1, description="built-in strategy name")
    params: dict[str, Any] = Field(default_factory=dict)
    timeframe: str | None = None
    start: str | None = None
    end: str | None = None
    cash: float = Field(10_000.0, gt=0, allow_inf_nan=False)
    fee: float = Field(0.001, ge=0, lt=0.1)
    slippage_bps: float = Field(0.0, ge=0, le=1000)
    stop_loss_pct: float | None = Field(None, gt=0, lt=1)
