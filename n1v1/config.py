"""The one settings model for N1V1: a YAML file, then `N1V1_*` environment
overrides, validated strictly.

Unknown keys are errors that name the full key path and suggest the closest valid key, because a
typo in a risk limit that is silently ignored is how accounts get blown up.

Environment overrides use `__` between levels: `N1V1_RISK__MAX_DRAWDOWN=0.2` sets
`risk.max_drawdown`. Values are parsed as YAML scalars, so `0.2`, `true` and `null` mean what
they look like.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from n1v1.data.datasets import dataset_names
from n1v1.execution.algo_plan import parse_span

ENV_PREFIX = "N1V1_"
# Secrets share the prefix but are not settings: they are read where they are used, never from YAML.
NOT_SETTINGS = frozenset(
    {
        "N1V1_API_TOKEN",
        "N1V1_API_TOKEN_FILE",
        "N1V1_API_READ_TOKEN",
        # the tokens' hashes `n1v1 paper` hands its Ray and `n1v1 train` in place of the tokens
        "N1V1_API_TOKEN_SHA256",
        "N1V1_API_READ_TOKEN_SHA256",
        "N1V1_STORE_URL",
        "N1V1_STORE_URL_FILE",
        # the Prometheus whose alerts the dashboard shows (n1v1/serve/gateway.py)
        "N1V1_PROMETHEUS_URL",
        # a live venue's exchange credentials (n1v1/live/credentials.py)
        "N1V1_EXCHANGE_API_KEY",
        "N1V1_EXCHANGE_API_KEY_FILE",
        "N1V1_EXCHANGE_API_SECRET",
        "N1V1_EXCHANGE_API_SECRET_FILE",
        "N1V1_EXCHANGE_PASSWORD",
        "N1V1_EXCHANGE_PASSWORD_FILE",
    }
)


class ConfigError(ValueError):
    """A configuration problem, with every offending key path in the message."""


# Upper bounds of quantities and amounts. Every number a setting holds is finite and bounded: an
# infinity or a 1e308 that slipped in would become an order nobody can fill or cancel, or overflow
# the integer arithmetic of lot rounding. The bounds are far above any real use.
MAX_QUANTITY = 1e12  # units of an asset in one order or position (more than any venue's limit)
MAX_AMOUNT = 1e15  # of the account currency (cash, notional)
MAX_BARS = 10_000_000  # a count of bars (about 19 years of one-minute bars)
MAX_COUNT = 1_000_000  # trades, losses or positions


class StrictModel(BaseModel):
    """Unknown keys are errors; NaN and infinities are refused wherever a float lives (a YAML
    `.inf`, an `N1V1_*=nan` or an API body with `Infinity` included)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class InstrumentSpec(StrictModel):
    """Exchange trading rules for one symbol. Zero means "no constraint"."""

    lot_size: float = Field(
        0.0, ge=0, le=MAX_QUANTITY, description="quantity step; orders are rounded down to it"
    )
    tick_size: float = Field(
        0.0, ge=0, le=MAX_AMOUNT, description="price step for limit and stop prices"
    )
    min_notional: float = Field(
        0.0, ge=0, le=MAX_AMOUNT, description="smallest order value (qty x price) accepted"
    )


# Exchange rules of the symbols the bundled datasets trade, so that dust cannot trade on them in a
# backtest or a paper session. Lot sizes are the venues' base increments; minimum notionals are
# Coinbase Exchange's `min_market_funds` (1 unit of the quote currency) and Binance's spot
# `NOTIONAL` filter for BTC/USDT (5 USDT), as the venues publish them today. Tick sizes are left
# at 0 (no rounding) so the compiled fast path, which cannot round prices, still runs; docs/
# execution.md lists the table. A symbol in `execution.instruments` replaces its entry here.
BUNDLED_INSTRUMENTS: dict[str, InstrumentSpec] = {
    "BTC/USD": InstrumentSpec(lot_size=1e-8, min_notional=1.0),
    "ETH/USD": InstrumentSpec(lot_size=1e-8, min_notional=1.0),
    "LTC/USD": InstrumentSpec(lot_size=1e-8, min_notional=1.0),
    "BTC/EUR": InstrumentSpec(lot_size=1e-8, min_notional=1.0),
    "BTC/USDT": InstrumentSpec(lot_size=1e-5, min_notional=5.0),
}


class AlgoSettings(StrictModel):
    """Execute the strategies' entries and target exits as parent orders (docs/execution.md,
    "Execution algorithms"): a child every `interval` over `duration`, from the bar the strategy
    decided on. Stops, take-profits, time exits and the kill switch stay single market orders."""

    name: Literal["twap", "vwap"] = "twap"
    duration: str = Field("4h", description="how long a parent works, e.g. '4h' (pandas spelling)")
    interval: str = Field("1h", description="time between children, e.g. '1h'")
    max_participation: float | None = Field(
        None, gt=0, le=1, description="a child is at most this share of the last bar's volume"
    )
    apply_to: Literal["entries", "exits", "both"] = "both"
    profile: str | None = Field(
        None,
        description="vwap: the bundled dataset whose volume by time of day weights the slots",
    )

    @model_validator(mode="after")
    def _check(self) -> AlgoSettings:
        duration = parse_span("duration", self.duration)  # a PlanError is a ValueError
        if duration < parse_span("interval", self.interval):
            raise ValueError(
                f"duration: {self.duration} is shorter than the interval {self.interval}"
            )
        if self.name == "vwap" and self.profile is None:
            raise ValueError("profile: a vwap needs the dataset its volume profile is learned from")
        if self.profile is not None and self.profile not in dataset_names():
            raise ValueError(
                f"profile: no bundled dataset {self.profile!r} (datasets: {dataset_names()})"
            )
        return self

    def applies_to(self, purpose: str) -> bool:
        named = {"entry": "entries", "exit": "exits"}.get(purpose)
        return self.apply_to == "both" or named == self.apply_to


class ExecutionSettings(StrictModel):
    """Fill, fee and slippage model of the simulated venue (see docs/execution.md)."""

    maker_fee: float = Field(0.001, ge=0, lt=0.1)
    taker_fee: float = Field(0.001, ge=0, lt=0.1)
    slippage_bps: float = Field(0.0, ge=0, le=1000)
    slippage_model: Literal["fixed", "volume"] = "fixed"
    impact_bps: float = Field(
        10.0, ge=0, le=10_000, description="volume model: bps x sqrt(qty / bar volume)"
    )
    fill: Literal["next_open", "close"] = "next_open"
    participation_cap: float | None = Field(
        None, gt=0, le=1, description="an order fills at most this share of a bar's volume"
    )
    limit_fill: Literal["touch", "through"] = Field(
        "touch",
        description="a limit (take-profit) fills when the bar touches its price, or only when "
        "the bar trades strictly beyond it (through)",
    )
    default_instrument: InstrumentSpec = InstrumentSpec()
    instruments: dict[str, InstrumentSpec] = Field(default_factory=dict)
    algo: AlgoSettings | None = Field(
        None, description="execute entries and exits by TWAP or VWAP parents (None: one order)"
    )

    def instrument(self, symbol: str) -> InstrumentSpec:
        """The symbol's rules: `instruments`, else the bundled table, else `default_instrument`."""
        if symbol in self.instruments:
            return self.instruments[symbol]
        return BUNDLED_INSTRUMENTS.get(symbol, self.default_instrument)


class RiskSettings(StrictModel):
    """Sizing, exits, portfolio limits and the circuit breaker. `None` switches a rule off."""

    allow_short: bool = False
    # sizing
    sizing: Literal["fraction", "fixed", "atr_risk", "kelly"] = "fraction"
    fraction: float = Field(1.0, gt=0, le=10, description="fraction of equity per position")
    qty: float | None = Field(
        None, gt=0, le=MAX_QUANTITY, description="fixed quantity (sizing: fixed)"
    )
    risk_per_trade: float = Field(0.01, gt=0, le=1, description="atr_risk: equity risked per trade")
    atr_period: int = Field(14, ge=1, le=1000)
    atr_multiple: float = Field(2.0, gt=0, le=100, description="atr_risk: stop distance in ATRs")
    kelly_fraction: float = Field(0.5, gt=0, le=1)
    kelly_cap: float = Field(0.25, gt=0, le=1)
    kelly_lookback: int = Field(50, ge=2, le=MAX_COUNT)
    kelly_min_trades: int = Field(20, ge=2, le=MAX_COUNT)
    # exits
    stop_loss_pct: float | None = Field(None, gt=0, lt=1)
    atr_stop_multiple: float | None = Field(None, gt=0, le=100)
    take_profit_pct: float | None = Field(None, gt=0, le=100, description="100 = +10,000 %")
    take_profit_r: float | None = Field(None, gt=0, le=100)
    trailing_stop_pct: float | None = Field(None, gt=0, lt=1)
    time_exit_bars: int | None = Field(None, ge=1, le=MAX_BARS)
    # portfolio limits
    max_open_positions: int | None = Field(None, ge=1, le=MAX_COUNT)
    max_symbol_exposure: float | None = Field(None, gt=0, le=100, description="fraction of equity")
    max_total_exposure: float | None = Field(None, gt=0, le=100, description="fraction of equity")
    max_daily_loss: float | None = Field(
        None, gt=0, lt=1, description="fraction of day-start equity"
    )
    # circuit breaker
    max_drawdown: float | None = Field(None, gt=0, lt=1, description="from the equity peak")
    max_consecutive_losses: int | None = Field(None, ge=1, le=MAX_COUNT)
    cooldown_bars: int = Field(0, ge=0, le=MAX_BARS, description="0: stay halted until reset")
    flatten_on_breach: bool = Field(
        False,
        description="when the circuit breaker or the daily loss limit trips, also cancel every "
        "working order and close every position (default: only refuse new entries)",
    )

    @property
    def uses_atr(self) -> bool:
        """ATR sizing or an ATR stop: the engine needs each symbol's ATR per bar."""
        return self.sizing == "atr_risk" or self.atr_stop_multiple is not None

    @model_validator(mode="after")
    def _consistent(self) -> RiskSettings:
        if self.sizing == "fixed" and self.qty is None:
            raise ValueError("risk.qty: required when risk.sizing is 'fixed'")
        if self.take_profit_r is not None and (
            self.stop_loss_pct is None and self.atr_stop_multiple is None
        ):
            raise ValueError(
                "risk.take_profit_r: needs a stop (risk.stop_loss_pct or risk.atr_stop_multiple)"
            )
        if self.take_profit_r is not None and self.take_profit_pct is not None:
            raise ValueError("risk.take_profit_r: set either take_profit_r or take_profit_pct")
        if self.flatten_on_breach and (
            self.max_drawdown is None
            and self.max_consecutive_losses is None
            and self.max_daily_loss is None
        ):
            raise ValueError(
                "risk.flatten_on_breach: needs a limit to breach (risk.max_drawdown, "
                "risk.max_consecutive_losses or risk.max_daily_loss)"
            )
        return self


class DataSettings(StrictModel):
    gap_policy: Literal["keep", "fill"] = "keep"
    timeframe: str | None = None


class BacktestSettings(StrictModel):
    cash: float = Field(
        10_000.0, gt=0, le=MAX_AMOUNT, description="initial cash, in the account currency"
    )
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,10}$",
        description="the account currency; every symbol must be quoted in it (None: the one "
        "quote currency the traded symbols share)",
    )
    risk_free_rate: float = Field(0.0, ge=-1, le=1, description="annual, for Sharpe and Sortino")
    run_id: str = Field("backtest", min_length=1, max_length=64)
    engine: Literal["auto", "event", "fast"] = "auto"
    close_at_end: bool = Field(
        False,
        description="close a position still open at the end of the data at the last close "
        "(taker fee, slippage) instead of marking it to market",
    )
    gaps: Literal["refuse", "segment", "allow"] = Field(
        "refuse",
        description="annualised metrics across data gaps: refuse (null, with a note), segment "
        "(per gap-free segment) or allow (annualise across them); docs/metrics.md",
    )
    gap_multiple: float = Field(
        10.0, gt=1, le=1e9, description="a gap: a bar spacing above this x the median spacing"
    )


class MLSettings(StrictModel):
    """Where models live and how training is scaled; model details are in the training spec."""

    # Relative to the folder a command runs in; a Ray job needs them absolute (n1v1/locations.py)
    model_root: str = Field("models", min_length=1, description="model registry directory")
    storage_path: str = Field(
        "ray_results", min_length=1, description="Ray Train storage: a local directory or a URI"
    )
    num_workers: int = Field(1, ge=1, le=1024, description="Ray Train workers")
    use_gpu: bool = False
    promotion_metric: str = Field("val_auc", min_length=1, description="higher is better")
    promotion_margin: float = Field(
        0.005,
        ge=0,
        le=1,
        description="a version must beat chance (AUC 0.5) and the promoted one by this much",
    )
    promotion_alpha: float = Field(
        0.05, gt=0, le=1, description="one-sided significance of 'validation AUC above chance'"
    )


class Settings(StrictModel):
    data: DataSettings = DataSettings()
    execution: ExecutionSettings = ExecutionSettings()
    risk: RiskSettings = RiskSettings()
    backtest: BacktestSettings = BacktestSettings()
    ml: MLSettings = MLSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from defaults < YAML file < environment < explicit overrides (e.g. CLI flags)."""
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    env_values = _env_overrides(os.environ if env is None else env)
    merged = _deep_merge(data, env_values)
    if overrides:
        merged = _deep_merge(merged, _expand_dotted(overrides))
    return parse_settings(merged)


def parse_settings(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, Settings)) from None


def format_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem: `full.key.path: message`, with a did-you-mean for unknown keys."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            suggestion = suggest_key(model, list(err["loc"]))
            hint = f"; did you mean {suggestion}?" if suggestion else ""
            lines.append(f"{path}: unknown key{hint}")
        else:
            message = err["msg"].removeprefix("Value error, ")
            if message.startswith(f"{path}:") or (not path and ":" in message):
                lines.append(message)
            else:
                lines.append(f"{path or '<root>'}: {message}")
    return "\n".join(lines)


def suggest_key(model: type[BaseModel], loc: list[Any]) -> str | None:
    """Walk the model along loc[:-1] and find the closest field name to loc[-1] (a field that
    may be None, `RiskSettings | None`, is walked into too)."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return None  # e.g. a dict key such as an instrument symbol
        annotation = fields[part].annotation
        candidates = (annotation, *typing.get_args(annotation))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return None
    fields = getattr(current, "model_fields", None)
    if not fields:
        return None
    match = difflib.get_close_matches(str(loc[-1]), list(fields), n=1, cutoff=0.6)
    return match[0] if match else None


def _read_yaml(path: Path) -> dict[str, Any]:
    return read_yaml_mapping(path, "config file")


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file; `ConfigError` naming ``path:line:column`` otherwise.

    The text is parsed from the file's own UTF-8 content with duplicate keys rejected (plain YAML
    loaders keep the last one silently, so a second ``risk:`` block would erase the first).
    ``what`` names the file's role in messages, e.g. "config file" or "spec file".
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a {what}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _line_and_column(raw, exc.start)
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x})"
        ) from None
    try:
        loaded = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(_yaml_error_message(path, text, exc)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping, naming both lines."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            seen = first_line.get(key)
        except TypeError:  # an unhashable key: the constructor below reports it
            continue
        if seen is not None:
            raise yaml.constructor.ConstructorError(
                problem=f"duplicate key {key!r} (first given on line {seen})",
                problem_mark=key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _yaml_error_message(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """``path:line:column: invalid YAML: problem (context)``, lines and columns from 1 as an
    editor shows them; PyYAML's own text would name "<unicode string>" instead of the file."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        message = exc.problem or "invalid YAML"
        context = exc.context
        if context and exc.context_mark is not None and exc.context_mark.line != mark.line:
            context += f" that starts on line {exc.context_mark.line + 1}"
        if context:
            message += f" ({context})"
        return f"{path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {message}"
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _line_and_column(text, exc.position)
        return (
            f"{path}:{line}:{column}: invalid YAML: {exc.reason} (character #x{exc.character:04x})"
        )
    return f"{path}: invalid YAML: {exc}"


def _line_and_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of a 0-based offset into the file's text (or bytes)."""
    newline = "\n" if isinstance(text, str) else b"\n"
    before = text[:offset]
    return before.count(newline) + 1, offset - (before.rfind(newline) + 1) + 1


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    flat = {}
    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        dotted = key[len(ENV_PREFIX) :].lower().replace("__", ".")
        if not dotted:
            continue
        try:
            flat[dotted] = yaml.safe_load(raw)
        except yaml.YAMLError:
            flat[dotted] = raw
    return _expand_dotted(flat)


def _expand_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        parts = dotted.split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{dotted}: conflicts with a scalar value at {part}")
        node[parts[-1]] = value
    return nested


def _deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
