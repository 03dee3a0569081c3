"""Run a backtest: bars + strategy + settings -> metrics, trades and an equity curve.

Two interchangeable paths compute the same thing. The event-driven `TradingEngine` handles
everything (many symbols, portfolio limits, the circuit breaker, ATR rules); the compiled fast path
(`n1v1.backtest.fast`) handles one symbol with the common cost, exit and participation rules a
thousand times faster. `engine="auto"` takes the fast path whenever the settings fit it;
`tests/test_fast_parity.py` shows both give identical trades and equity on the configurations the
fast path accepts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from n1v1 import indicators
from n1v1.backtest.fast import REASON_NAMES, FastConfig, FastResult, simulate
from n1v1.backtest.gaps import gap_notes, segment_metrics, trade_durations, trade_gap_note
from n1v1.backtest.metrics import compute_metrics, sample_time, short_sample_note
from n1v1.backtest.result_json import equity_json_chunks, iso_strings, trade_records
from n1v1.config import Settings
from n1v1.data.gaps import Gap, gaps_at
from n1v1.domain import Side, Symbol, Trade
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.journal import InMemoryJournal
from n1v1.engine.shadows import StrategyShadows
from n1v1.engine.signals import PrecomputedTargets
from n1v1.execution.instruments import account_currency
from n1v1.execution.profiles import check_profile
from n1v1.execution.shortfall import aggregate_shortfall
from n1v1.strategies.base import Strategy


class BacktestError(ValueError):
    pass


@dataclass
class BacktestResult:
    metrics: dict[str, Any]
    trades: list[Trade]
    equity: pd.Series
    engine: str
    strategy: str
    params: dict[str, Any]
    symbols: list[str]
    settings: Settings
    journal: InMemoryJournal | None = None
    notes: list[str] = field(default_factory=list)
    currency: str | None = None  # the account currency (None: no symbol declares a quote)
    # name -> {"basis": "account" | "shadow", "params", "metrics"}: each strategy's own P&L
    strategies: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Gaps in the bars (spacings above backtest.gap_multiple x the median), in time order, and
    # under backtest.gaps=segment the figures of each gap-free segment (n1v1.backtest.gaps).
    gaps: list[Gap] = field(default_factory=list)
    segments: list[dict[str, Any]] | None = None
    # execution.algo: the parents' implementation shortfall added up (None: no parents)
    execution: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """metrics, trades, equity ([isoformat, value] per bar) and meta, as plain JSON data."""
        doc = self._head()
        doc["equity"] = [
            [stamp, value]
            for stamp, value in zip(
                iso_strings(self.equity.index), self.equity.to_numpy().tolist(), strict=True
            )
        ]
        return {key: doc[key] for key in ("metrics", "strategies", "trades", "equity", "meta")}

    def write_json(self, path: str | Path) -> Path:
        """`to_dict()` as a JSON file, written at array speed (n1v1.backtest.result_json): the
        equity curve goes last, one `[timestamp, equity]` pair per line."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = orjson.dumps(self._head(), option=orjson.OPT_INDENT_2)
        with path.open("wb") as out:
            out.write(head[:-2])  # without the closing "\n}"
            out.write(b',\n  "equity": ')
            for piece in equity_json_chunks(self.equity.index, self.equity.to_numpy()):
                out.write(piece)
            out.write(b"\n}\n")
        return path

    def trade_records(self) -> list[dict[str, Any]]:
        """`Trade.to_dict()` of every trade plus its calendar `duration_seconds` (None while
        open) and `spans_gap` (a gap lies between its entry and its exit)."""
        clock = sample_time(self.equity.index, gap_multiple=self.settings.backtest.gap_multiple)
        durations, spans = trade_durations(self.trades, self.equity.index, clock.gap_bars)
        return trade_records(self.trades, durations, spans)

    def _head(self) -> dict[str, Any]:
        """Everything but the equity curve."""
        backtest = self.settings.backtest
        return {
            "metrics": self.metrics,
            "strategies": self.strategies,
            "trades": self.trade_records(),
            "meta": {
                "strategy": self.strategy,
                "params": self.params,
                "symbols": self.symbols,
                "engine": self.engine,
                "fill": self.settings.execution.fill,
                "maker_fee": self.settings.execution.maker_fee,
                "taker_fee": self.settings.execution.taker_fee,
                "slippage_bps": self.settings.execution.slippage_bps,
                "cash": backtest.cash,
                "currency": self.currency,
                "gap_policy": backtest.gaps,
                "gap_multiple": backtest.gap_multiple,
                "gaps": [gap.to_dict() for gap in self.gaps],
                "segments": self.segments,
                "execution": self.execution,
                "notes": self.notes,
            },
        }


def run_backtest(
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    strategy: Strategy | Sequence[Strategy] | Mapping[str, Strategy],
    settings: Settings | None = None,
    *,
    engine: str | None = None,
    progress: bool = False,
    shadows: bool = True,
) -> BacktestResult:
    """Backtest on one symbol's bars (a DataFrame) or several (symbol -> bars).

    `strategy` is one strategy, or several (a sequence with distinct names, or name -> strategy)
    that trade one account netted per symbol (docs/execution.md, "Several strategies on one
    symbol"); then each one's own P&L comes from its shadow account (`shadows=False` skips them:
    the account's results are the same either way) and the event-driven engine runs.
    """
    settings = settings or Settings()
    strategies = _as_strategies(strategy)
    for each in strategies.values():
        each.bind_settings(settings)
    frames = _as_frames(bars)
    currency = account_currency(settings.backtest.currency, frames)  # ConfigError if mixed
    choice = engine or settings.backtest.engine
    unsupported = fast_path_unsupported(settings, frames)
    if len(strategies) > 1:
        unsupported = ", ".join(filter(None, ["more than one strategy", unsupported]))
    if choice == "fast" and unsupported:
        raise BacktestError(f"engine=fast cannot run these settings: {unsupported}")
    if choice == "event" or (choice == "auto" and unsupported):
        result = _run_event(frames, strategies, settings, progress, shadows)
    else:
        (only,) = strategies.values()
        result = _run_fast(frames, only, settings)
    if choice == "auto" and unsupported:
        result.notes.append(f"event-driven engine used: {unsupported}")
    result.currency = currency
    describe_gaps(result)
    short = short_sample_note(result.metrics)
    if short is not None:
        result.notes.append(short)
    if not result.strategies and len(strategies) == 1:
        # One strategy alone in its account: its P&L is the account's.
        (name,) = strategies
        result.strategies = {
            name: {"basis": "account", "params": result.params, "metrics": result.metrics}
        }
    # what each strategy wants the reader to know (ml_signal: "traded in-sample bars")
    for strategy in strategies.values():
        result.notes.extend(n for n in getattr(strategy, "notes", ()) if n not in result.notes)
    return result


def _as_strategies(
    strategy: Strategy | Sequence[Strategy] | Mapping[str, Strategy],
) -> dict[str, Strategy]:
    if isinstance(strategy, Mapping):
        strategies = {str(name): s for name, s in strategy.items()}
    elif isinstance(strategy, Sequence):
        names = [s.name for s in strategy]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise BacktestError(
                f"strategies: {twice} named more than once; pass a mapping name -> strategy"
            )
        strategies = {s.name: s for s in strategy}
    else:
        strategies = {strategy.name: strategy}
    if not strategies:
        raise BacktestError("strategies: none given")
    bad = [n for n in strategies if not n or "+" in n]
    if bad:
        raise BacktestError(f"strategies: names {bad} must be non-empty and without '+'")
    return strategies


def describe_gaps(result: BacktestResult) -> None:
    """Record the gaps of the result's bars, the notes they call for and, under
    backtest.gaps=segment, the figures of each gap-free segment."""
    backtest = result.settings.backtest
    index = result.equity.index
    clock = sample_time(index, gap_multiple=backtest.gap_multiple)
    if clock.n_gaps == 0:
        return
    result.gaps = gaps_at(index, clock.gap_bars, clock.bar_seconds * 1e9)  # type: ignore[operator]
    result.notes += gap_notes(result.gaps, backtest.gaps, backtest.gap_multiple)
    durations, spans = trade_durations(result.trades, index, clock.gap_bars)
    result.notes += trade_gap_note(result.trades, durations, spans)
    if backtest.gaps == "segment":
        result.segments = segment_metrics(
            result.equity,
            backtest.cash,
            clock,
            risk_free_rate=backtest.risk_free_rate,
        )


def fast_path_unsupported(settings: Settings, frames: Mapping[str, pd.DataFrame]) -> str:
    """Why the fast path cannot reproduce the engine for these settings ('' when it can)."""
    ex, risk = settings.execution, settings.risk
    symbol = next(iter(frames))
    spec = ex.instrument(symbol)
    checks = [
        (len(frames) != 1, "more than one symbol"),
        (ex.slippage_model != "fixed", "execution.slippage_model=volume"),
        (spec.tick_size > 0, "instrument tick_size"),
        (risk.sizing not in ("fraction", "fixed"), f"risk.sizing={risk.sizing}"),
        (risk.atr_stop_multiple is not None, "risk.atr_stop_multiple"),
        (risk.max_open_positions is not None, "risk.max_open_positions"),
        (risk.max_symbol_exposure is not None, "risk.max_symbol_exposure"),
        (risk.max_total_exposure is not None, "risk.max_total_exposure"),
        (risk.max_daily_loss is not None, "risk.max_daily_loss"),
        (risk.max_drawdown is not None, "risk.max_drawdown"),
        (risk.max_consecutive_losses is not None, "risk.max_consecutive_losses"),
        (risk.flatten_on_breach, "risk.flatten_on_breach"),
        (ex.algo is not None, "execution.algo"),
    ]
    return ", ".join(reason for failed, reason in checks if failed)


def fast_config(settings: Settings, symbol: str) -> FastConfig:
    ex, risk = settings.execution, settings.risk
    spec = ex.instrument(symbol)
    return FastConfig(
        cash=settings.backtest.cash,
        taker_fee=ex.taker_fee,
        maker_fee=ex.maker_fee,
        slippage_bps=ex.slippage_bps,
        fill=ex.fill,
        qty=risk.qty if risk.sizing == "fixed" else None,
        fraction=risk.fraction,
        lot_size=spec.lot_size,
        min_notional=spec.min_notional,
        stop_loss_pct=risk.stop_loss_pct,
        take_profit_pct=risk.take_profit_pct,
        take_profit_r=risk.take_profit_r,
        trailing_stop_pct=risk.trailing_stop_pct,
        time_exit_bars=risk.time_exit_bars,
        allow_short=risk.allow_short,
        participation_cap=ex.participation_cap,
        limit_fill=ex.limit_fill,
        close_at_end=settings.backtest.close_at_end,
    )


# -- the two paths ---------------------------------------------------------------------------------
def _run_event(
    frames: dict[str, pd.DataFrame],
    strategies: dict[str, Strategy],
    settings: Settings,
    progress: bool,
    with_shadows: bool,
) -> BacktestResult:
    journal = InMemoryJournal()
    engine = TradingEngine(settings, journal=journal)
    for name, strategy in strategies.items():
        engine.add_signal_source(
            PrecomputedTargets(strategy, frames, settings.risk.allow_short, name=name)
        )
    risk = settings.risk
    if risk.uses_atr:
        for symbol, frame in frames.items():
            engine.set_atr(
                symbol,
                indicators.atr(
                    frame["high"].to_numpy(),
                    frame["low"].to_numpy(),
                    frame["close"].to_numpy(),
                    risk.atr_period,
                ),
            )
    if settings.execution.algo is not None:  # a vwap's profile has history before the run
        check_profile(settings.execution.algo, min(frame.index[0] for frame in frames.values()))
    shadows = None
    if with_shadows and len(strategies) > 1:
        shadows = StrategyShadows(settings, engine.sources, atr=engine.atr)
    feed = ReplayFeed(frames)
    steps = iter(feed)
    if progress:
        from tqdm import tqdm

        steps = iter(tqdm(feed, total=len(feed), unit="bar", desc="backtest", leave=False))
    last_ts = None
    for ts, step in steps:
        engine.on_bar(ts, step)
        if shadows is not None:
            shadows.on_bar(ts, step)
        last_ts = ts
    if last_ts is not None:
        engine.finish(last_ts)
        if shadows is not None:
            shadows.finish(last_ts)
    trades, metrics = _account_results(engine, settings)
    per_strategy: dict[str, dict[str, Any]] = {}
    if shadows is not None:
        for name, shadow in shadows.engines.items():
            per_strategy[name] = {
                "basis": "shadow",
                "params": strategies[name].params.model_dump(),
                "metrics": _account_results(shadow, settings)[1],
            }
    several = len(strategies) > 1
    result = BacktestResult(
        metrics,
        trades,
        engine.equity_series(),
        "event",
        "+".join(strategies),
        {n: s.params.model_dump() for n, s in strategies.items()}
        if several
        else next(iter(strategies.values())).params.model_dump(),
        list(frames),
        settings,
        journal,
        strategies=per_strategy,
    )
    parents = list(engine.algos.parents.values())
    if parents:
        result.execution = {
            "algo": settings.execution.algo.model_dump() if settings.execution.algo else None,
            **aggregate_shortfall(
                (p.shortfall(), p.paper_value, p.status.value, p.single_order_bps) for p in parents
            ),
        }
    return result


def _account_results(
    engine: TradingEngine, settings: Settings
) -> tuple[list[Trade], dict[str, Any]]:
    """An engine's trades (open ones marked at their symbol's last close) and its metrics."""
    trades = engine.trades()
    return trades, compute_metrics(
        engine.equity_series(),
        trades,
        settings.backtest.cash,
        fills_notional=engine.portfolio.traded_notional,
        fees_paid=engine.portfolio.fees_paid,
        exposure_bars=engine.exposure_bars,
        risk_free_rate=settings.backtest.risk_free_rate,
        gap_policy=settings.backtest.gaps,
        gap_multiple=settings.backtest.gap_multiple,
    )


def _run_fast(
    frames: dict[str, pd.DataFrame], strategy: Strategy, settings: Settings
) -> BacktestResult:
    ((symbol, frame),) = frames.items()
    targets = strategy.target_positions(frame, allow_short=settings.risk.allow_short)
    config = fast_config(settings, symbol)
    result = simulate(
        frame["open"].to_numpy(),
        frame["high"].to_numpy(),
        frame["low"].to_numpy(),
        frame["close"].to_numpy(),
        targets,
        config,
        volume=frame["volume"].to_numpy(),
    )
    trades = fast_trades(result, frame.index, Symbol(symbol))
    equity = pd.Series(result.equity, index=frame.index, name="equity")
    metrics = compute_metrics(
        equity,
        trades,
        settings.backtest.cash,
        fills_notional=result.traded_notional,
        fees_paid=result.fees_paid,
        exposure_bars=result.exposure_bars,
        risk_free_rate=settings.backtest.risk_free_rate,
        gap_policy=settings.backtest.gaps,
        gap_multiple=settings.backtest.gap_multiple,
    )
    return BacktestResult(
        metrics,
        trades,
        equity,
        "fast",
        strategy.name,
        strategy.params.model_dump(),
        [symbol],
        settings,
    )


def fast_trades(result: FastResult, index: pd.DatetimeIndex, symbol: Symbol) -> list[Trade]:
    """The fast path's trade rows as Trades, ordered like the engine's (closed, then open).

    The kernel marks a trade still open at the last close, as the portfolio does. Built
    column-wise: looking up one Timestamp per trade costs more than the whole simulation.
    """
    rows = result.trades
    if rows.shape[0] == 0:
        return []
    rows = rows[np.argsort(rows["exit_idx"] < 0, kind="stable")]  # closed first, then open
    exit_idx = rows["exit_idx"]
    is_open = (exit_idx < 0).tolist()
    entry_times = list(index.take(rows["entry_idx"]))
    exit_times = list(index.take(np.where(exit_idx < 0, 0, exit_idx)))
    reasons = [REASON_NAMES[r] for r in rows["exit_reason"].tolist()]
    columns = zip(
        rows["side"].tolist(),
        rows["qty"].tolist(),
        entry_times,
        rows["entry_price"].tolist(),
        exit_times,
        rows["exit_price"].tolist(),
        rows["pnl"].tolist(),
        rows["fees"].tolist(),
        reasons,
        rows["bars_held"].tolist(),
        rows["open_qty"].tolist(),
        is_open,
        strict=True,
    )
    trades = []
    for (
        side,
        qty,
        entered,
        entry_price,
        exited,
        exit_price,
        pnl,
        fees,
        reason,
        held,
        open_qty,
        still_open,
    ) in columns:
        trades.append(
            Trade(
                symbol=symbol,
                side=Side.BUY if side > 0 else Side.SELL,
                qty=qty,
                entry_time=entered,
                entry_price=entry_price,
                exit_time=None if still_open else exited,
                exit_price=None if still_open else exit_price,
                pnl=pnl,
                fees=fees,
                exit_reason="" if still_open else reason,
                bars_held=held,
                open_qty=open_qty,
            )
        )
    return trades


def _as_frames(bars: pd.DataFrame | Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    if isinstance(bars, pd.DataFrame):
        symbol = str(bars.attrs.get("symbol") or "ASSET")
        frames = {symbol: bars}
    else:
        frames = {str(s): f for s, f in bars.items()}
    if not frames:
        raise BacktestError("no bars given")
    for symbol, frame in frames.items():
        if len(frame) == 0:
            raise BacktestError(f"{symbol}: no bars")
        missing = [c for c in ("open", "high", "low", "close", "volume") if c not in frame]
        if missing:
            raise BacktestError(f"{symbol}: missing columns {missing}")
        if not math.isfinite(float(frame["close"].iloc[-1])):
            raise BacktestError(f"{symbol}: last close is not finite")
    return frames
