"""Request and error bodies of the HTTP API.

Strict, so what a caller sends is what the engine gets: an unknown or misspelt field is a 422 that
names it; types are not coerced (`"qty": true`, `"qty": "1"` and `"paused": "yes"` are 422s, a JSON
integer still counts as a number); NaN, infinities and numbers past a bound are 422s naming the
field, so no order, setting or model input can carry one. Free text may not hold control
characters (PostgreSQL refuses a NUL in text and JSON, so one would surface as a failed write).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from n1v1.config import MAX_AMOUNT, MAX_QUANTITY, RiskSettings
from n1v1.data.datasets import dataset_names
from n1v1.strategies.registry import list_strategies

# Printable text: no C0 control characters but tab, newline and carriage return, no DEL.
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
_TEXT = re.compile(TEXT)
# An exchange symbol as ccxt writes it ("BTC/USD", "BTC/USDT:USDT", "ETH-PERP"): ASCII only.
SYMBOL = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
SLOT_ID = r"^[A-Za-z0-9_.-]{1,64}$"  # as n1v1.live.config.StrategySlot.id
PARAM_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
MODEL_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # as n1v1.ml.registry_io.validate_name
MAX_JSON_INT = 2**53  # integers beyond this are not exact in JSON numbers (or JavaScript)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_PARAM_TEXT = 200


def _param_value(value: Any) -> Any:
    """A strategy parameter as JSON gives it: null, true/false, a finite number or short text.
    Each strategy's own model checks the name, type and range (n1v1/strategies)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) <= MAX_JSON_INT:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= MAX_PARAM_TEXT and _TEXT.fullmatch(value):
        return value
    raise ValueError(
        "a parameter is null, true or false, a finite number (integers within +-2^53) or up "
        f"to {MAX_PARAM_TEXT} printable characters"
    )


ParamValue = Annotated[
    Any,
    PlainValidator(_param_value),
    WithJsonSchema({"type": ["number", "string", "boolean", "null"], "maxLength": MAX_PARAM_TEXT}),
]
Params = dict[Annotated[str, Field(pattern=PARAM_NAME)], ParamValue]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


def _no_default(schema: dict[str, Any]) -> None:
    """A patch field absent means "unchanged": the schema must not claim a default of null."""
    schema.pop("default", None)


def _patch_of(model: type[BaseModel], name: str) -> type[Body]:
    """A partial update of `model`: every field optional, each with the model's own type and
    bounds (one home for each rule), strictly typed. `model_dump(exclude_unset=True)` gives what
    was sent, an explicit null included (it switches an optional rule off)."""
    fields: dict[str, Any] = {}
    for field, info in model.model_fields.items():
        annotation = (
            Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        )
        fields[field] = (
            annotation,
            Field(None, description=info.description, json_schema_extra=_no_default),
        )
    patch: type[Body] = create_model(name, __base__=Body, **fields)
    patch.__doc__ = f"Any fields of {model.__name__}; those not sent keep their value."
    return patch


RiskPatch = _patch_of(RiskSettings, "RiskPatch")


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    """Bodies shown in /docs (and tried first by the API fuzzer, tests/test_api_fuzz.py)."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class PauseBody(Body):
    model_config = _examples({"reason": "maintenance"})

    reason: str = Field("", max_length=500, pattern=TEXT)


class ResumeBody(Body):
    model_config = _examples({}, {"reset_kill_switch": True})

    reset_kill_switch: bool = False


class KillSwitchBody(Body):
    model_config = _examples({"reason": "drill"})

    reason: str = Field(
        min_length=1, max_length=500, pattern=TEXT, description="why, for the journal"
    )


class OrderBody(Body):
    """A manual market order (docs/execution.md, "Manual orders")."""

    model_config = _examples(
        {"symbol": "BTC/USD", "side": "buy", "qty": 0.01},
        {"symbol": "BTC/USD", "side": "sell", "qty": 0.01, "resize": True},
    )

    symbol: str = Field(min_length=1, max_length=64, pattern=SYMBOL)
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0, le=MAX_QUANTITY, description="units of the base asset")
    resize: bool = Field(
        False, description="cut an order over a limit, the cash or the lot instead of a 409"
    )
    reverse: bool = Field(
        False, description="an order larger than the position opens the other side with the rest"
    )


DURATION = r"^[0-9]{1,6}(\.[0-9]{1,6})?\s?(s|sec|min|h|d)$"  # pandas' spelling, the usual units
DATASET = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class AlgoOrderBody(Body):
    """A parent order executed by an algorithm (docs/execution.md, "Execution algorithms"):
    children of whole lots every `interval` over `duration`, from the last closed bar."""

    model_config = _examples(
        {
            "symbol": "BTC/USD",
            "side": "buy",
            "qty": 0.5,
            "algo": "twap",
            "duration": "1h",
            "interval": "5min",
        },
        {
            "symbol": "BTC/USD",
            "side": "sell",
            "qty": 0.5,
            "algo": "vwap",
            "duration": "4h",
            "interval": "15min",
            "profile": "coinbase_BTC-USD_1m",
            "max_participation": 0.1,
            "limit_price": 6500.0,
        },
    )

    symbol: str = Field(min_length=1, max_length=64, pattern=SYMBOL)
    side: Literal["buy", "sell"]
    qty: float = Field(gt=0, le=MAX_QUANTITY, description="units of the base asset, whole lots")
    algo: Literal["twap", "vwap"] = "twap"
    duration: str = Field(pattern=DURATION, description="how long it works, e.g. '1h'")
    interval: str = Field(pattern=DURATION, description="time between children, e.g. '5min'")
    limit_price: float | None = Field(
        None, gt=0, le=MAX_AMOUNT, description="a child waits while the close is beyond it"
    )
    max_participation: float | None = Field(
        None, gt=0, le=1, description="a child is at most this share of the last bar's volume"
    )
    profile: str | None = Field(
        None,
        max_length=128,
        pattern=DATASET,
        description="vwap: the bundled dataset whose volume by time of day weights the slots "
        "(its bars before the last closed bar only)",
    )

    def payload(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ConfigBody(Body):
    """A partial update of the live-tunable settings (merged into the current ones)."""

    model_config = _examples(
        {"risk": {"max_drawdown": 0.25, "max_open_positions": 2, "stop_loss_pct": None}},
        {"strategies": {"rsi": {"period": 10}}},
        {"paused": False},
    )

    paused: bool | None = Field(None, json_schema_extra=_no_default)
    risk: RiskPatch | None = Field(None, json_schema_extra=_no_default)  # type: ignore[valid-type]
    strategies: dict[Annotated[str, Field(pattern=SLOT_ID)], Params] | None = Field(
        None,
        max_length=64,
        description="parameter overrides by strategy id",
        json_schema_extra=_no_default,
    )

    def patch(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.paused is not None:
            out["paused"] = self.paused
        if self.risk is not None:
            out["risk"] = self.risk.model_dump(exclude_unset=True)
        if self.strategies is not None:
            out["strategies"] = self.strategies
        return out


class PredictBody(Body):
    model: str = Field(
        min_length=1, max_length=64, pattern=MODEL_NAME, description="registry model name"
    )
    version: str | None = Field(
        None,
        pattern=r"^(v[0-9]{4,9}|latest)$",
        description="a version such as v0001, or latest (default: the promoted version)",
    )
    rows: list[Annotated[list[FiniteFloat], Field(max_length=4096)]] = Field(
        min_length=1, max_length=4096, description="raw feature rows, in the card's order"
    )


def _choices(names: list[str]) -> Any:
    """Document the names a field takes (the route checks them and says which are valid)."""
    return lambda schema: schema.update(enum=names)


class BacktestBody(Body):
    model_config = _examples(
        {"dataset": "coinbase_BTC-USD_1d", "strategy": "sma_cross", "params": {"fast": 10}}
    )

    dataset: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="bundled dataset name (or give `file`)",
        json_schema_extra=_choices(dataset_names()),
    )
    file: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="a file of bars in the server's upload directory, by name (GET "
        "/api/v1/catalog lists them; or give `dataset`)",
    )
    strategy: str = Field(
        min_length=1,
        max_length=64,
        description="built-in strategy name",
        json_schema_extra=_choices(list_strategies()),
    )
    params: Params = Field(default_factory=dict, max_length=64)
    timeframe: str | None = Field(
        None, pattern=r"^[1-9][0-9]{0,5}[smhd]$", description="resample to, e.g. 15m, 1h, 1d"
    )
    start: str | None = Field(None, max_length=64, description="ISO-8601 date or time (UTC)")
    end: str | None = Field(None, max_length=64, description="ISO-8601 date or time (UTC)")
    cash: float = Field(10_000.0, gt=0, le=MAX_AMOUNT)
    fee: float = Field(0.001, ge=0, lt=0.1)
    slippage_bps: float = Field(0.0, ge=0, le=1000)
    stop_loss_pct: float | None = Field(None, gt=0, lt=1)


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_request, risk_rejected")
    message: str = Field(description="what went wrong, naming the field or rule")
    details: dict[str, Any] = Field(
        description="e.g. fields[] with each bad field (422), retry_after_s (429)"
    )


class ErrorResponse(BaseModel):
    """Every error the API answers, whatever its status."""

    error: ErrorDetail


class EngineReadiness(BaseModel):
    state: str | None = Field(description="the engine's state (None: it did not answer)")
    reason: str = Field(description="why it is not ready, e.g. the database's error")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, bool] = Field(description="store, engine and model: reachable or not")
    engine: EngineReadiness | None = Field(
        None, description="only when not ready: the engine's state and why"
    )


def strict_param_errors(strategy: str, params: dict[str, Any], where: str) -> list[dict[str, str]]:
    """Each parameter override whose JSON type does not match the strategy's own parameter model
    (checked strictly: `"period": "14"` or `"period": true` is refused, not read as 14 or 1).
    Names and ranges are left to the strategy, which names them itself."""
    from n1v1.strategies.registry import get_strategy

    model = get_strategy(strategy).Params  # a built-in: the callers checked the name
    errors = []
    for name, value in params.items():
        adapter = _field_adapter(model, name)
        if adapter is None:
            continue
        try:
            adapter.validate_python(value, strict=True)
        except ValidationError as exc:
            errors.append({"field": f"{where}.{name}", "message": exc.errors()[0]["msg"]})
    return errors


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any] | None:
    info = model.model_fields.get(name)
    if info is None:
        return None
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))
