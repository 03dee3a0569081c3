"""Per-strategy shadow accounts: each strategy's own P&L when several trade one account.

The real account nets its strategies per symbol (it trades towards the sign of their summed
targets, docs/execution.md "Several strategies on one symbol"), so a long of one strategy and a
short of another cancel out and no trade belongs to one strategy alone. A strategy's P&L is
therefore measured in its shadow: a `TradingEngine` with the same settings, initial cash, bars
and ATR as the real account whose only signal source is that strategy. It sizes, limits, stops and
fills exactly as the account would if that strategy traded alone: its market orders fill by the
same rule at the same bar's price (next open or close, the same slippage and fees), so where the
real account and a shadow trade a symbol on the same bar they get the same price under fixed
slippage; quantities differ, since each shadow sizes from its own equity.

Shadows only read: they have their own venue, portfolio, risk manager and a journal that records
nothing, so the real account's orders, fills and equity are the same with or without them
(tests/test_strategy_pnl.py). Operator actions (manual orders, cancels, the kill switch, pause)
act on the real account only; live changes of risk settings and strategy parameters reach the
shadows too. Deterministic like the engine, so a restarted session rebuilds them by replay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from n1v1.config import Settings
from n1v1.domain import Bar, Symbol
from n1v1.engine.engine import TradingEngine
from n1v1.engine.journal import NullJournal
from n1v1.engine.signals import SignalSource


class StrategyShadows:
    """One shadow account per signal source, stepped with the same bars as the real account."""

    def __init__(
        self,
        settings: Settings,
        sources: Iterable[SignalSource],
        *,
        atr: dict[Symbol, np.ndarray] | None = None,
        run_id: str | None = None,
    ) -> None:
        base = run_id or settings.backtest.run_id
        self.engines: dict[str, TradingEngine] = {}
        for source in sources:
            engine = TradingEngine(settings, journal=NullJournal(), run_id=f"{base}~{source.name}")
            engine.add_signal_source(source)
            if atr is not None:
                engine.atr = atr  # the real account's ATR, shared (read only here)
            self.engines[source.name] = engine

    def set_sources(self, sources: Iterable[SignalSource]) -> None:
        """New strategy objects (live parameter changes) for the shadows of the same names. A
        shadow whose strategy is not among them (one standing aside in a live session) gets no
        source, so it places no order while the real account ignores that strategy too."""
        given = {source.name: source for source in sources}
        for name, engine in self.engines.items():
            engine.sources = [given[name]] if name in given else []

    def update_settings(self, settings: Settings) -> None:
        for engine in self.engines.values():
            engine.update_settings(settings)

    def on_bar(self, ts: pd.Timestamp, bars: Mapping[Symbol, tuple[int, Bar]]) -> None:
        for engine in self.engines.values():
            engine.on_bar(ts, bars)

    def finish(self, ts: pd.Timestamp) -> None:
        for engine in self.engines.values():
            engine.finish(ts)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Each strategy's P&L now: `shadow_pnl` of its shadow."""
        return {name: shadow_pnl(engine) for name, engine in self.engines.items()}


def shadow_pnl(engine: TradingEngine) -> dict[str, Any]:
    """An account's P&L in the account currency: net = equity - initial cash; unrealised = the
    open positions marked to their last price against their average entry; realised = net -
    unrealised, so it carries every fee paid so far (entries of open positions included)."""
    portfolio = engine.portfolio
    equity = portfolio.equity
    positions = []
    unrealized = 0.0
    for symbol, pos in sorted(portfolio.positions.items()):
        if not pos.is_open:
            continue
        marked = math.isfinite(pos.last_price)
        unrealized += pos.unrealized_pnl if marked else 0.0
        positions.append(
            {
                "symbol": symbol,
                "qty": pos.qty,
                "avg_entry": pos.avg_entry,
                "last_price": pos.last_price if marked else None,
            }
        )
    net = equity - portfolio.initial_cash
    closed = portfolio.closed_trades
    return {
        "equity": equity,
        "net_pnl": net,
        "return": net / portfolio.initial_cash,
        "realized_pnl": net - unrealized,
        "unrealized_pnl": unrealized,
        "fees_paid": portfolio.fees_paid,
        "closed_trades": len(closed),
        "winning_trades": sum(1 for t in closed if t.pnl > 0),
        "positions": positions,
        "targets": {
            symbol: target
            for symbol, by_source in engine.current_targets().items()
            for target in by_source.values()
        },
    }
