"""The Serve application's builder arguments: everything `serve_config.yaml` may say, typed.

Strict, so that a bad config fails `serve run`/`serve deploy` naming the key, before any replica
starts, rather than failing a replica in a loop: an unknown key is an error; types are not coerced
(`"20"`, `true` or `1.5` where an integer belongs are errors, not 20, 1 or a truncation); every
number is finite and bounded; times, timeframes and strategy parameters are checked here, not when
a replica first uses them. (The risk and execution sections are the settings model's own,
n1v1/config.py.) The feed's data sources are bundled dataset names or an exchange id, never file
paths, because a config can arrive through `serve deploy` from someone who should not choose what
this process trades on; `upload_dir` names the one directory (besides the store and the models)
whose files a backtest requested over HTTP may read, each by its file name only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import ConfigDict, Field, field_validator, model_validator

from n1v1.config import (
    BacktestSettings,
    ConfigError,
    ExecutionSettings,
    MLSettings,
    RiskSettings,
    Settings,
    StrictModel,
)
from n1v1.execution.instruments import account_currency
from n1v1.live.config import LiveConfig, StrategySlot
from n1v1.store.location import check_store_url, resolve_store_url


class ArgsModel(StrictModel):
    """No coercion, no infinities or NaN (they would pass `gt=0` and disable a limit)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False
    )


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _timeframe(value: str | None) -> str | None:
    from n1v1.data import DataError, parse_timeframe

    if value is not None:
        try:
            parse_timeframe(value)
        except DataError as exc:
            raise ValueError(str(exc)) from None
    return value


def _unique(values: list[str], what: str) -> list[str]:
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in first:
            raise ValueError(
                f"item {i} ({value!r}) repeats item {first[value]}: one {what} per symbol"
            )
        first[value] = i
    return values


class ReplayFeedArgs(ArgsModel):
    """Paper trading on history: bundled datasets replayed at `bars_per_second` (0 = flat out)."""

    kind: Literal["replay"] = "replay"
    datasets: list[str] = Field(min_length=1, description="bundled dataset names, one per symbol")
    timeframe: str | None = Field(None, description="resample first, e.g. 5m")
    start: str | None = None
    end: str | None = None
    bars_per_second: float = Field(10.0, ge=0, le=100_000)
    after_replay: Literal["stop", "synthetic"] = Field(
        "stop",
        description="stop: the session shows `replay_finished` after the last bar; synthetic: "
        "it goes on with seeded synthetic bars from the last closes (labelled, not market data)",
    )

    @field_validator("datasets")
    @classmethod
    def _bundled(cls, value: list[str]) -> list[str]:
        from n1v1.data.datasets import dataset_names

        known = dataset_names()
        for i, name in enumerate(value):
            if name not in known:
                raise ValueError(f"datasets.{i}: {name!r} is not a bundled dataset ({known})")
        return _unique(value, "dataset")

    _timeframe = field_validator("timeframe")(_timeframe)

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            _utc_time(value)
        return value

    @model_validator(mode="after")
    def _window(self) -> ReplayFeedArgs:
        """start <= end, where an end given as a date covers that whole day (as the replay cuts)."""
        if self.start is None or self.end is None:
            return self
        end = _utc_time(self.end)
        if _DATE_ONLY.match(self.end.strip()):
            end += pd.Timedelta(days=1) - pd.Timedelta(1, "ns")
        if _utc_time(self.start) > end:
            raise ValueError(f"start {self.start} is after end {self.end}: no bar to replay")
        return self


def _utc_time(text: str) -> pd.Timestamp:
    """The time `text` names (ISO-8601; naive is UTC), or ValueError saying how to write one."""
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, OverflowError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise ValueError(
            f"cannot read {text!r} as a UTC time; use ISO-8601 such as 2018-04-04 or "
            "2018-04-04T12:30"
        )
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


class CcxtFeedArgs(ArgsModel):
    """Live bars from an exchange's public market data through ccxt (no keys needed)."""

    kind: Literal["ccxt"]
    exchange: str = Field(min_length=1, max_length=32, pattern=r"^[a-z0-9]+$")
    symbols: list[
        Annotated[str, Field(max_length=40, pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")]
    ] = Field(min_length=1, max_length=100, description="BASE/QUOTE, e.g. BTC/USDT")
    timeframe: str = "1m"
    poll_seconds: float = Field(5.0, gt=0, le=3600)

    _timeframe = field_validator("timeframe")(_timeframe)

    @field_validator("symbols")
    @classmethod
    def _one_each(cls, value: list[str]) -> list[str]:
        return _unique(value, "feed")


FeedArgs = Annotated[ReplayFeedArgs | CcxtFeedArgs, Field(discriminator="kind")]


class VenueArgs(ArgsModel):
    """Where orders go (docs/live.md): `paper`, the simulated venue (the default), or `live`, an
    exchange account through ccxt. Credentials never appear here: they come from the
    environment or mounted files (N1V1_EXCHANGE_API_KEY / _SECRET / _PASSWORD, or their
    `_FILE` forms, n1v1/live/credentials.py)."""

    kind: Literal["paper", "live"] = "paper"
    exchange: str = Field(
        "binance", min_length=1, max_length=32, pattern=r"^[a-z0-9]+$", description="ccxt id"
    )
    sandbox: bool = Field(False, description="the exchange's testnet/demo (ccxt sandbox mode)")
    base_url: str | None = Field(
        None,
        max_length=200,
        pattern=r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._/-]*)?$",
        description="replaces the exchange's REST host in every API section ccxt calls (a "
        "testnet, a proxy, a local exchange)",
    )
    timeout_ms: int = Field(10_000, ge=100, le=120_000, description="per HTTP call")
    grace_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="how long an order may stay invisible at the exchange before it counts as "
        "never received",
    )
    poll_s: float = Field(2.0, gt=0, le=3600, description="how often working orders are read")
    reconcile_every_s: float = Field(
        60.0, gt=0, le=86_400, description="how often positions are checked against balances"
    )


class EngineArgs(ArgsModel):
    lease_ttl_s: float = Field(15.0, gt=0, le=600, description="lease time-to-live")
    stall_timeout_s: float = Field(30.0, gt=0, le=3600, description="check_health fails after this")
    window: int = Field(500, ge=10, le=100_000, description="bars a live strategy sees")
    prediction_timeout_s: float = Field(
        0.5, gt=0, le=30, description="how long a bar waits for the Model replicas' answers"
    )
    on_prediction_failure: Literal["hold", "flat"] = Field(
        "hold",
        description="an ml_signal slot without an answer (timeout, error): keep its last "
        "target (hold) or go flat",
    )
    snapshot_every: int = Field(
        1000,
        ge=0,
        le=10_000_000,
        description="steps between snapshots of the engine's state (0: none); a recovery "
        "replays at most this many steps (docs/serve.md, Recovery)",
    )
    snapshots_kept: int = Field(3, ge=1, le=100, description="newest snapshots kept in the store")


class ApiArgs(ArgsModel):
    rate_limit_per_s: float = Field(
        50.0, gt=0, le=1_000_000, description="per token, per gateway replica"
    )
    rate_burst: int = Field(100, ge=1, le=1_000_000)
    anonymous_rate_per_s: float = Field(
        2.0,
        gt=0,
        le=1_000_000,
        description="requests without a valid token, per client address and gateway replica; "
        "past it 429",
    )
    anonymous_burst: int = Field(20, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    max_replicas: int = Field(2, ge=1, le=64)


class ModelArgs(ArgsModel):
    max_replicas: int = Field(2, ge=1, le=256)
    max_batch_size: int = Field(64, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1)
    refresh_s: float = Field(
        2.0, gt=0, le=3600, description="how often a replica checks for a promotion"
    )


class AppArgs(ArgsModel):
    # A rejected value is not echoed in the error: a store URL may hold a password (Ray prints
    # the error of `serve deploy` to its logs and to the caller).
    model_config = ConfigDict(
        extra="forbid",
        validate_assignment=True,
        strict=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )

    store_url: str = Field(
        "sqlite:///n1v1.db",
        description="sqlite:///path or postgresql+psycopg://user@host/db, without a password; "
        "N1V1_STORE_URL_FILE or N1V1_STORE_URL override it (n1v1/store/location.py)",
    )
    model_root: str = Field("models", min_length=1, description="model registry directory")
    upload_dir: str | None = Field(
        None,
        min_length=1,
        description="the directory of bar files (CSV, Parquet) that backtests requested over "
        "HTTP may name; None: bundled datasets only (n1v1/data/uploads.py)",
    )
    feed: FeedArgs = Field(default_factory=lambda: ReplayFeedArgs(datasets=["coinbase_BTC-USD_1m"]))
    strategies: list[StrategySlot] = Field(
        default_factory=lambda: [StrategySlot(name="sma_cross")], min_length=1
    )
    cash: float = Field(
        10_000.0,
        gt=0,
        le=1e12,
        description="initial cash, in the account currency (at most 1e12, so that a cent is "
        "still exact in float64 arithmetic)",
    )
    currency: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,10}$",
        description="the account currency: every symbol must be quoted in it (None: the one "
        "quote currency the feed's symbols share)",
    )
    risk: RiskSettings = RiskSettings()
    execution: ExecutionSettings = ExecutionSettings()
    engine: EngineArgs = EngineArgs()
    venue: VenueArgs = VenueArgs()
    api: ApiArgs = ApiArgs()
    model: ModelArgs = ModelArgs()
    run_id: str = Field("paper", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("store_url")
    @classmethod
    def _store(cls, value: str) -> str:
        try:
            return check_store_url(value, where="store_url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("store_url: ")) from None

    def resolved_store_url(self) -> str:
        """The URL the app opens: a Secret's (N1V1_STORE_URL_FILE, N1V1_STORE_URL) over
        `store_url` (n1v1/store/location.py)."""
        return resolve_store_url(self.store_url)

    @model_validator(mode="after")
    def _strategies_start(self) -> AppArgs:
        """Each slot's parameters build its strategy (`serve deploy` fails here, not a replica)
        and each slot has its own id."""
        from n1v1.strategies import StrategyError
        from n1v1.strategies.registry import create_strategy

        seen: set[str] = set()
        for i, slot in enumerate(self.strategies):
            if slot.slot_id in seen:
                raise ValueError(
                    f"strategies.{i}: a second slot with id {slot.slot_id!r}; give each slot of "
                    "the same strategy its own `id`"
                )
            seen.add(slot.slot_id)
            try:
                create_strategy(slot.name, slot.params)
            except StrategyError as exc:
                raise ValueError(f"strategies.{i}.params: {exc}") from None
        return self

    @model_validator(mode="after")
    def _one_currency(self) -> AppArgs:
        """One account, one currency: a feed mixing quote currencies fails `serve deploy`."""
        if isinstance(self.feed, ReplayFeedArgs):
            # dataset names are <venue>_<BASE>-<QUOTE>_<timeframe> (n1v1/data/datasets.py)
            symbols = [name.split("_")[1].replace("-", "/") for name in self.feed.datasets]
        else:
            symbols = list(self.feed.symbols)
        try:
            account_currency(self.currency, symbols)
        except ConfigError as exc:
            raise ValueError(str(exc).replace("backtest.currency", "currency")) from None
        return self

    @model_validator(mode="after")
    def _live_rules(self) -> AppArgs:
        """What a live venue cannot do yet, refused by name before anything trades."""
        if self.venue.kind != "live":
            return self
        if not isinstance(self.feed, CcxtFeedArgs):
            raise ValueError(
                "venue.kind: live trades on the exchange's own bars: set feed.kind to ccxt"
            )
        if self.feed.exchange != self.venue.exchange:
            raise ValueError(
                f"venue.exchange: {self.venue.exchange!r} trades, feed.exchange "
                f"{self.feed.exchange!r} prices: they must be the same exchange"
            )
        refused = live_refusals(self.risk, self.execution)
        if refused:
            raise ValueError("; ".join(refused))
        return self

    @property
    def state_dir(self) -> Path | None:
        """The folder of a SQLite store (the app's own files live beside it: the API token);
        None for PostgreSQL. Relative to the working directory, as SQLite takes the path."""
        url = self.resolved_store_url()
        if url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///")).parent
        return None

    def settings(self) -> Settings:
        """The engine's settings (the one settings model), from these arguments."""
        return Settings(
            execution=self.execution,
            risk=self.risk,
            backtest=BacktestSettings(cash=self.cash, currency=self.currency, run_id=self.run_id),
            ml=MLSettings(model_root=self.model_root),
        )


def live_refusals(risk: RiskSettings, execution: ExecutionSettings) -> list[str]:
    """Settings a live venue cannot honour yet, each naming its key (docs/live.md): it trades
    spot (no shorts) and fills after the decision, never at the decision bar's close. (Stops
    and take-profits are held by the venue and sent as market orders when a bar reaches them.)"""
    out = []
    if risk.allow_short:
        out.append("risk.allow_short: the live venue trades spot: no short positions")
    if execution.fill != "next_open":
        out.append("execution.fill: live orders fill after the decision: use next_open")
    return out


def parse_user_config(config: dict[str, Any] | None) -> LiveConfig:
    """Serve's `user_config` is a LiveConfig; errors name the key."""
    return LiveConfig.model_validate(config or {})


def replay_feed(feed: ReplayFeedArgs) -> Any:
    """The paced replay a `replay` feed describes (no Ray here: the bare benchmark uses it too)."""
    from n1v1.live.replay import SyntheticContinuation, bundled_replay

    return bundled_replay(
        feed.datasets,
        feed.bars_per_second,
        timeframe=feed.timeframe,
        start=feed.start,
        end=feed.end,
        continuation=SyntheticContinuation() if feed.after_replay == "synthetic" else None,
    )


def make_feed(args: AppArgs, exchange: Any = None) -> Any:
    """The session's feed; a live venue's ccxt instance (`exchange`) serves its bars too."""
    feed = args.feed
    if isinstance(feed, CcxtFeedArgs):
        from n1v1.live.ccxt_feed import CcxtBarFeed

        return CcxtBarFeed(
            feed.exchange,
            feed.symbols,
            feed.timeframe,
            poll_seconds=feed.poll_seconds,
            exchange=exchange,
            history_bars=0,  # strategies warm up on live bars: never paper-trade the past
        )
    return replay_feed(feed)


def feed_interval_s(args: AppArgs) -> float:
    """Wall-clock seconds expected between two feed steps: a live feed's timeframe, a replay's
    1 / bars_per_second (0 for a replay without pacing). The stalled-feed alert compares the
    time since the last step with a multiple of it (docs/monitoring.md)."""
    from n1v1.data.resample import parse_timeframe

    feed = args.feed
    if isinstance(feed, CcxtFeedArgs):
        return parse_timeframe(feed.timeframe).total_seconds()
    return 1.0 / feed.bars_per_second if feed.bars_per_second > 0 else 0.0


@dataclass(frozen=True)
class LiveConnection:
    """A live venue's ccxt instance and the session's broker factory (both None on paper)."""

    exchange: Any = None
    broker: Any = None


def live_connection(args: AppArgs) -> LiveConnection:
    """The exchange account `args.venue` names, when it trades live (credentials from the
    environment: a ConfigError naming the variable when missing)."""
    if args.venue.kind != "live":
        return LiveConnection()
    from n1v1.live.connect import broker_factory, live_exchange

    exchange = live_exchange(args.venue)
    return LiveConnection(exchange, broker_factory(exchange, args.venue))
