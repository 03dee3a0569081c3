"""Run a backtest: bars + strategy + settings -> metrics, trades and an equity curve.

Two interchangeable paths compute the same thing. The event-driven `TradingEngine` handles
everything
(many symbols, partial fills, portfolio limits, the circuit breaker, ATR rules); the compiled fast
path
(`n1v1.backtest.fast`) handles one symbol with the common cost and exit rules a thousand times
faster.
`engine="auto"` takes the fast path whenever the settings fit it; `tests/test_fast_parity.py` shows
both
give identical trades and equity on the configurations the fast path accepts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from n1v1 import indicators
from n1v1.backtest.fast import REASON_NAMES, FastConfig, FastResult, simulate
from n1v1.backtest.metrics import compute_metrics
from n1v1.config import Settings
from n1v1.domain import Side, Symbol, Trade
from n1v1.engine.engine import TradingEngine
from n1v1.engine.feeds import ReplayFeed
from n1v1.engine.journal import InMemoryJournal
from n1v1.engine.signals import PrecomputedTargets
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "trades": [t.to_dict() for t in self.trades],
            "equity": [
                [ts.isoformat(), float(v)]
                for ts, v in zip(self.equity.index, self.equity.to_numpy(), strict=True)
            ],
            "meta": {
                "strategy": self.strategy,
                "params": self.params,
                "symbols": self.symbols,
                "engine": self.engine,
                "fill": self.settings.execution.fill,
                "maker_fee": self.settings.execution.maker_fee,
                "taker_fee": self.settings.execution.taker_fee,
                "slippage_bps": self.settings.execution.slippage_bps,
                "cash": self.settings.backtest.cash,
                "notes": self.notes,
            },
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path


def run_backtest(
    bars: pd.DataFrame | Mapping[str, pd.DataFrame],
    strategy: Strategy,
    settings: Settings | None = None,
    *,
    engine: str | None = None,
    progress: bool = False,
) -> BacktestResult:
    """Backtest `strategy` on one symbol's bars (a DataFrame) or several (symbol -> bars)."""
    settings = settings or Settings()
    strategy.bind_settings(settings)
    frames = _as_frames(bars)
    choice = engine or settings.backtest.engine
    unsupported = fast_path_unsupported(settings, frames)
    if choice == "fast" and unsupported:
        raise BacktestError(f"engine=fast cannot run these settings: {unsupported}")
    if choice == "event" or (choice == "auto" and unsupported):
        result = _run_event(frames, strategy, settings, progress)
    else:
        result = _run_fast(frames, strategy, settings)
    if choice == "auto" and unsupported:
        result.notes.append(f"event-driven engine used: {unsupported}")
    # what the strategy wants the reader to know (ml_signal: "traded in-sample bars")
    result.notes.extend(n for n in getattr(strategy, "notes", ()) if n not in result.notes)
    return result


def fast_path_unsupported(settings: Settings, frames: Mapping[str, pd.DataFrame]) -> str:
    """Why the fast path cannot reproduce the engine for these settings ('' when it can)."""
    ex, risk = settings.execution, settings.risk
    symbol = next(iter(frames))
    spec = ex.instrument(symbol)
    checks = [
        (len(frames) != 1, "more than one symbol"),
        (ex.participation_cap is not None, "execution.participation_cap"),
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
    )


# -- the two paths ---------------------------------------------------------------------------------
def _run_event(
    frames: dict[str, pd.DataFrame], strategy: Strategy, settings: Settings, progress: bool
) -> BacktestResult:
    journal = InMemoryJournal()
    engine = TradingEngine(settings, journal=journal)
    engine.add_signal_source(PrecomputedTargets(strategy, frames, settings.risk.allow_short))
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
    feed = ReplayFeed(frames)
    steps = iter(feed)
    if progress:
        from tqdm import tqdm

        steps = iter(tqdm(feed, total=len(feed), unit="bar", desc="backtest", leave=False))
    engine.run(steps)
    trades = engine.trades()
    last_close = {s: float(f["close"].iloc[-1]) for s, f in frames.items()}
    mark_open_trades(trades, last_close)
    equity = engine.equity_series()
    metrics = compute_metrics(
        equity,
        trades,
        settings.backtest.cash,
        fills_notional=engine.portfolio.traded_notional,
        fees_paid=engine.portfolio.fees_paid,
        exposure_bars=engine.exposure_bars,
        risk_free_rate=settings.backtest.risk_free_rate,
    )
    return BacktestResult(
        metrics,
        trades,
        equity,
        "event",
        strategy.name,
        strategy.params.model_dump(),
        list(frames),
        settings,
        journal,
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
    )
    trades = fast_trades(result, frame.index, Symbol(symbol))
    mark_open_trades(trades, {symbol: float(frame["close"].iloc[-1])})
    equity = pd.Series(result.equity, index=frame.index, name="equity")
    metrics = compute_metrics(
        equity,
        trades,
        settings.backtest.cash,
        fills_notional=result.traded_notional,
        fees_paid=result.fees_paid,
        exposure_bars=result.exposure_bars,
        risk_free_rate=settings.backtest.risk_free_rate,
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

    Built column-wise: looking up one Timestamp per trade costs more than the whole simulation.
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
            )
        )
    return trades


def mark_open_trades(trades: list[Trade], last_close: Mapping[str, float]) -> None:
    """A trade still open at the end shows its mark-to-market PnL at the last close, net of fees."""
    for trade in trades:
        if trade.exit_time is None:
            direction = 1.0 if trade.side is Side.BUY else -1.0
            price = last_close[trade.symbol]
            trade.pnl = (price - trade.entry_price) * trade.qty * direction - trade.fees


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
