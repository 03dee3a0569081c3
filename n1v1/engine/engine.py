"""The TradingEngine: one loop for backtest, paper and live trading.

bar -> fills at the open -> intrabar stops and take-profits -> mark to market -> risk state -> time
exits -> strategy targets -> risk review -> orders -> venue. The exact order and every fill rule are
in docs/execution.md; the engine owns the decisions, the venue owns the fills, the portfolio owns
the money, and the journal sees all of it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from n1v1.config import Settings
from n1v1.domain import (
    PROTECTIVE_PURPOSES,
    Bar,
    ClientOrderId,
    EquityPoint,
    Fill,
    Order,
    OrderPurpose,
    OrderType,
    Side,
    Signal,
    Symbol,
    Trade,
    make_client_order_id,
)
from n1v1.engine.algo_orders import STRATEGY_PURPOSES, AlgoBook, AlgoRequest
from n1v1.engine.journal import InMemoryJournal, Journal
from n1v1.engine.manual import ManualOrderResult, place_manual_order
from n1v1.engine.portfolio import Portfolio
from n1v1.engine.signals import SignalSource
from n1v1.execution.algo_plan import PlanError, parse_span, profile_weights, slot_times
from n1v1.execution.algos import ParentOrder
from n1v1.execution.instruments import account_currency
from n1v1.execution.live_venue import LiveVenue
from n1v1.execution.profiles import dataset_profile, profile_bucket
from n1v1.execution.venue import Execution, SimulatedVenue
from n1v1.risk.exits import exit_levels, tighter_stop, trailing_stop
from n1v1.risk.manager import RiskManager


@dataclass(slots=True)
class FlattenReport:
    """What a kill switch (or a breach with `risk.flatten_on_breach`) did: the working orders it
    cancelled, the positions it flattens and the market orders placed to flatten them."""

    reason: str
    cancelled: list[Order] = field(default_factory=list)
    positions: list[dict[str, object]] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)


@dataclass(slots=True)
class _SymbolState:
    """What the engine remembers about one symbol between bars."""

    index: int = -1  # bar number within this symbol's series
    intended: int = 0  # direction we are trading towards (position plus working orders)
    blocked: int = 0  # direction not to re-enter after a protective or time exit
    targets: dict[str, int] = field(default_factory=dict)  # last target per strategy
    held_bars: int = 0
    entry_atr: float = math.nan
    extreme: float = math.nan  # best price since entry, for the trailing stop
    fixed_stop: float | None = None
    stop_id: ClientOrderId | None = None
    take_profit_id: ClientOrderId | None = None
    last_bar: Bar | None = None  # for backtest.close_at_end


class TradingEngine:
    def __init__(
        self,
        settings: Settings,
        *,
        journal: Journal | None = None,
        venue: SimulatedVenue | LiveVenue | None = None,
        run_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.journal: Journal = journal if journal is not None else InMemoryJournal()
        self.portfolio = Portfolio(settings.backtest.cash)
        self.venue = venue or SimulatedVenue(
            settings.execution, affordable_qty=self._affordable_qty
        )
        self.risk = RiskManager(settings.risk, self.journal)
        self.risk.set_initial_equity(self.portfolio.equity)
        self.run_id = run_id or settings.backtest.run_id
        self.currency = settings.backtest.currency  # the account's; set by the first symbol if None
        self.sources: list[SignalSource] = []
        self.atr: dict[Symbol, np.ndarray] = {}
        self.equity_curve: list[tuple[pd.Timestamp, float]] = []
        self.exposure_bars = 0
        self.step = -1
        self._states: dict[Symbol, _SymbolState] = {}
        self._order_seq: dict[tuple[Symbol, int], int] = {}
        self._next_open = settings.execution.fill == "next_open"
        self.algos = AlgoBook(self)
        self.cost_rate = settings.execution.taker_fee + settings.execution.slippage_bps / 10_000.0

    # -- set-up ----------------------------------------------------------------------------------
    def add_signal_source(self, source: SignalSource) -> None:
        self.sources.append(source)

    def set_atr(self, symbol: str, values: np.ndarray) -> None:
        """ATR per bar of a symbol, for ATR sizing and stops (known at each bar's close)."""
        self.atr[Symbol(symbol)] = np.asarray(values, dtype=np.float64)

    def current_targets(self) -> dict[Symbol, dict[str, int]]:
        """The last target of each strategy (signal source) for each symbol seen."""
        return {symbol: dict(st.targets) for symbol, st in self._states.items()}

    def state(self, symbol: Symbol) -> _SymbolState:
        st = self._states.get(symbol)
        if st is None:
            # Never add two currencies: a symbol quoted in another one is refused (ConfigError).
            self.currency = account_currency(
                self.settings.backtest.currency, [*self._states, symbol]
            )
            st = self._states[symbol] = _SymbolState()
        return st

    # -- the loop --------------------------------------------------------------------------------
    def run(self, steps: Iterable[tuple[pd.Timestamp, Mapping[Symbol, tuple[int, Bar]]]]) -> None:
        last_ts = None
        for ts, bars in steps:
            self.on_bar(ts, bars)
            last_ts = ts
        if last_ts is not None:
            self.finish(last_ts)

    def on_bar(self, ts: pd.Timestamp, bars: Mapping[Symbol, tuple[int, Bar]]) -> None:
        self.step += 1
        self.algos.begin_bar()
        for symbol, (index, bar) in bars.items():
            st = self.state(symbol)
            st.index = index
            # Under `close` fills only leftovers (partial fills, kill-switch exits) work
            # at the open.
            self.venue.match_open(symbol, bar, on_execution=lambda ex, st=st: self._process(ex, st))
            self._check_protective(symbol, bar, st)
            self.portfolio.mark(symbol, bar.close)
            # A position filled at this bar's close does not exist yet: it counts from the next bar
            if self.portfolio.holds(symbol):
                st.held_bars += 1

        equity = self.portfolio.equity
        breaches = self.risk.on_bar_close(ts, self.step, equity)
        if breaches and self.settings.risk.flatten_on_breach:
            rule, reason = breaches[0]
            self.risk.record_decision(ts, Symbol("*"), rule, "flatten", reason)
            closes = {symbol: bar for symbol, (_, bar) in bars.items()}
            self._flatten_all(ts, OrderPurpose.RISK_FLATTEN, f"{rule}: {reason}", closes)

        for symbol, (index, bar) in bars.items():
            st = self._states[symbol]
            if self.venue.busy(symbol):
                continue  # a live order's outcome is not final yet: decide once it is
            self._check_time_exit(symbol, bar, st)
            self._act_on_targets(symbol, index, bar, st, equity)
        self.algos.on_bars(ts, bars)

        equity = self.portfolio.equity
        self.equity_curve.append((ts, equity))
        self.journal.record_equity(
            EquityPoint(ts, self.portfolio.cash, self.portfolio.position_value, equity)
        )
        if any(self.portfolio.holds(symbol) for symbol in self.portfolio.positions):
            self.exposure_bars += 1

    def on_venue_events(self, limit: int | None = None) -> int:
        """Apply what a live venue reported (acknowledgements, refusals, cancels, fills), in the
        order it was observed: all of it before a step's bars, like a fill at the open, or the
        `limit` oldest between bars. Returns how many were applied; nothing for the simulated
        venue, which fills against the bars themselves."""
        drain = getattr(self.venue, "drain", None)
        if drain is None:
            return 0
        applied = 0
        for item in drain(limit):
            applied += 1
            if isinstance(item, Execution):
                self._process(item, self.state(item.order.symbol))
                self._protect_again(item.order)
            elif item is not None:
                self.journal.record_order(item)
                self.algos.on_order_closed(item)
                self._protect_again(item)
        return applied

    def _protect_again(self, order: Order) -> None:
        """A live venue's stop or take-profit, sent when a bar reached it, that ended with the
        position still held (refused, proven never to have arrived, expired unfilled or in
        part): held again at its level for what is left, under a new id, so the next bar that
        reaches it sends it again. One cancelled on purpose no longer has its id in the
        symbol's state, and is left alone."""
        if order.purpose not in PROTECTIVE_PURPOSES or not order.status.is_terminal:
            return
        st = self.state(order.symbol)
        if order.client_order_id not in (st.stop_id, st.take_profit_id):
            return
        is_stop = order.client_order_id == st.stop_id
        if is_stop:
            st.stop_id = None
        else:
            st.take_profit_id = None
        pos = self.portfolio.position(order.symbol)
        if not self.portfolio.holds(order.symbol) or st.last_bar is None:
            return
        assert order.price is not None
        again = self._submit_resting(
            order.symbol,
            order.side,
            abs(pos.qty),
            order.order_type,
            order.price,
            st.last_bar.timestamp,
            order.purpose,
            order.oco_group,
            order.strategy,
        )
        if is_stop:
            st.stop_id = again
        else:
            st.take_profit_id = again

    def finish(self, ts: pd.Timestamp) -> None:
        """End of data: working orders expire; open positions stay open, marked at the last close.

        With `backtest.close_at_end` each open position is instead closed by a market order filled
        at its symbol's last close (taker fee and slippage, no participation cap), and the last
        equity point becomes the equity after those fills: a walk-forward window ends in cash.
        """
        for order in self.venue.expire_all(ts):
            self.journal.record_order(order)
        self.algos.end_all(ts)
        open_positions = self.portfolio.open_positions()
        if not self.settings.backtest.close_at_end or not open_positions:
            return
        for pos in open_positions:
            st = self.state(pos.symbol)
            assert st.last_bar is not None  # a position implies a bar was seen
            st.stop_id = st.take_profit_id = None  # expired above
            st.intended = 0
            order = Order(
                client_order_id=self._new_order_id(pos.symbol, ts, OrderPurpose.END_OF_DATA),
                symbol=pos.symbol,
                side=Side.SELL if pos.qty > 0 else Side.BUY,
                qty=abs(pos.qty),
                order_type=OrderType.MARKET,
                created_at=ts,
                purpose=OrderPurpose.END_OF_DATA,
                reason="end of data",
            )
            self._place(order, ts)
            execution = self.venue.fill_at_end(order, st.last_bar)
            assert execution is not None  # uncapped, and an exit never needs cash
            self._process(execution, st)
        equity = self.portfolio.equity
        self.equity_curve[-1] = (ts, equity)
        self.journal.record_equity(
            EquityPoint(ts, self.portfolio.cash, self.portfolio.position_value, equity)
        )
        if not self.portfolio.open_positions():
            self.exposure_bars -= 1  # the last bar now ends flat, as with any fill at a close

    # -- kill switch and flattening ----------------------------------------------------------------
    def kill_switch(
        self, ts: pd.Timestamp, reason: str, bars: Mapping[Symbol, Bar]
    ) -> FlattenReport:
        """Cancel everything, flatten every position and refuse new entries until reset.

        Returns what it did: the orders it cancelled, the positions it flattens and the market
        orders that flatten them (they fill at the next open, or at `bars`' close under `close`).
        """
        self.risk.engage_kill_switch(ts, reason)
        report = self._flatten_all(ts, OrderPurpose.KILL_SWITCH, "kill switch", bars)
        report.reason = reason
        return report

    def _flatten_all(
        self, ts: pd.Timestamp, purpose: OrderPurpose, reason: str, bars: Mapping[Symbol, Bar]
    ) -> FlattenReport:
        """Cancel every working order and close every position with a market order.

        Each symbol is then blocked in the direction it held or was entering, like after a stop:
        its strategies' unchanged targets must not re-enter once trading resumes, nor cancel a
        flattening order that is still filling (docs/execution.md, "Kill switch").
        """
        report = FlattenReport(reason)
        self.algos.cancel_all(ts, reason)
        for order in list(self.venue.working_orders()):
            cancelled = self.venue.cancel(order.client_order_id, ts, reason)
            self.journal.record_order(cancelled)
            report.cancelled.append(cancelled)
        for symbol, st in self._states.items():
            pos = self.portfolio.position(symbol)
            direction = (1 if pos.qty > 0 else -1) if self.portfolio.holds(symbol) else st.intended
            if direction:
                st.blocked = direction
            st.intended = 0
            st.stop_id = st.take_profit_id = None
        for pos in self.portfolio.open_positions():
            if self.portfolio.is_dust(pos):
                continue  # the exchange would not take it
            report.positions.append(
                {
                    "symbol": pos.symbol,
                    "qty": pos.qty,
                    "avg_entry": pos.avg_entry,
                    "last_price": pos.last_price if math.isfinite(pos.last_price) else None,
                    "unrealized_pnl": pos.unrealized_pnl if math.isfinite(pos.last_price) else None,
                }
            )
            side = Side.SELL if pos.qty > 0 else Side.BUY
            order = self._submit_market(
                pos.symbol, side, abs(pos.qty), ts, purpose, bars.get(pos.symbol), reason
            )
            report.orders.append(order)
        return report

    # -- operator actions (applied between bars) -------------------------------------------------
    def submit_manual_order(
        self,
        symbol: str,
        side: Side,
        qty: float,
        ts: pd.Timestamp,
        price: float,
        *,
        resize: bool = False,
        reverse: bool = False,
        client_order_id: ClientOrderId | None = None,
        reason: str = "operator",
    ) -> ManualOrderResult:
        """An operator's market order, filled at the next bar's open; `price` is the last close.
        The rules (never past flat without `reverse`, never resized without `resize`) are in
        `n1v1.engine.manual` and docs/execution.md, "Manual orders"."""
        return place_manual_order(
            self, symbol, side, qty, ts, price, resize, reverse, client_order_id, reason
        )

    def submit_algo_order(self, request: AlgoRequest, ts: pd.Timestamp, bar: Bar) -> ParentOrder:
        """A parent order (TWAP, VWAP) accepted at `bar`, the symbol's last closed bar: planned
        now (PlanError naming the field), its children sent bar by bar (engine/algo_orders.py)."""
        return self.algos.accept(request, ts, bar)

    def cancel_algo_order(self, parent_id: str, ts: pd.Timestamp, reason: str) -> ParentOrder:
        """Stop a parent and cancel its working children (KeyError: no such parent)."""
        return self.algos.cancel(parent_id, ts, reason)

    def cancel_order(self, client_order_id: str, ts: pd.Timestamp, reason: str) -> Order:
        """Cancel a working order (KeyError when no working order has that id)."""
        working = {o.client_order_id: o for o in self.venue.working_orders()}
        order = working.get(ClientOrderId(client_order_id))
        if order is None:
            raise KeyError(client_order_id)
        st = self.state(order.symbol)
        if client_order_id == st.stop_id:
            st.stop_id = None
        if client_order_id == st.take_profit_id:
            st.take_profit_id = None
        cancelled = self.venue.cancel(order.client_order_id, ts, reason)
        self.journal.record_order(cancelled)
        return cancelled

    def update_settings(self, settings: Settings) -> None:
        """Swap in new live-tunable settings (risk limits); execution rules may not change."""
        if settings.execution != self.settings.execution:
            raise ValueError("execution settings cannot change while the engine runs")
        self.settings = settings
        self.risk.update_settings(settings.risk)

    # -- steps of a bar ----------------------------------------------------------------------------
    def _check_protective(self, symbol: Symbol, bar: Bar, st: _SymbolState) -> None:
        st.last_bar = bar
        self.venue.match_range(symbol, bar, on_execution=lambda ex, st=st: self._process(ex, st))
        for order in self.venue.take_changed():  # e.g. a live venue's stop triggered, now sent
            self.journal.record_order(order)
        pos = self.portfolio.position(symbol)
        trail = self.settings.risk.trailing_stop_pct
        if not self.portfolio.holds(symbol) or trail is None:
            return
        # The bar's extreme counts only after the bar's own stop check (docs/execution.md).
        direction = 1 if pos.qty > 0 else -1
        st.extreme = max(st.extreme, bar.high) if direction > 0 else min(st.extreme, bar.low)
        new_stop = tighter_stop(
            direction, st.fixed_stop, trailing_stop(direction, st.extreme, trail)
        )
        # (a live venue's stop that has triggered, or that the exchange refused, no longer moves)
        if (
            st.stop_id is not None
            and new_stop is not None
            and any(o.client_order_id == st.stop_id for o in self.venue.resting(symbol))
        ):
            order = self.venue.set_price(st.stop_id, new_stop)
            trailing_binds = st.fixed_stop is None or new_stop != st.fixed_stop
            order.purpose = OrderPurpose.TRAILING_STOP if trailing_binds else OrderPurpose.STOP_LOSS

    def _check_time_exit(self, symbol: Symbol, bar: Bar, st: _SymbolState) -> None:
        limit = self.settings.risk.time_exit_bars
        pos = self.portfolio.position(symbol)
        if limit is None or st.intended == 0 or st.held_bars < limit:
            return
        if not self.portfolio.holds(symbol):
            return
        st.blocked = 1 if pos.qty > 0 else -1
        self._close_position(symbol, bar, st, OrderPurpose.TIME_EXIT, f"held {st.held_bars} bars")

    def _act_on_targets(
        self, symbol: Symbol, index: int, bar: Bar, st: _SymbolState, equity: float
    ) -> None:
        if not self.sources:
            return
        total = 0
        for source in self.sources:
            target = source.target(symbol, index)
            if not self.settings.risk.allow_short and target < 0:
                target = 0
            if st.targets.get(source.name) != target:
                st.targets[source.name] = target
                self.journal.record_signal(Signal(bar.timestamp, symbol, source.name, target))
            total += target
        desired = (total > 0) - (total < 0)
        if st.blocked and desired != st.blocked:
            st.blocked = 0
        if st.blocked and desired == st.blocked:
            desired = 0
        if desired == st.intended:
            return
        # Changing course: what is still working was meant for the old course.
        self.algos.cancel_symbol(symbol, bar.timestamp, "target changed", STRATEGY_PURPOSES)
        for order in self.venue.working_orders(symbol):
            if order.order_type is OrderType.MARKET:
                self.journal.record_order(
                    self.venue.cancel(order.client_order_id, bar.timestamp, "target changed")
                )
        pos = self.portfolio.position(symbol)
        holds = self.portfolio.holds(symbol)
        if holds and (pos.qty > 0) == (desired > 0) and desired != 0:
            st.intended = desired  # already holding (part of) the wanted position
            if st.stop_id is None and st.take_profit_id is None:
                # e.g. the rest of a partly filled exit, cancelled above: protect it again
                self._place_protective(symbol, bar.timestamp, st)
            return
        if holds:
            held = 1 if pos.qty > 0 else -1  # closed by the strategies no longer holding it
            leaving = "+".join(name for name, t in st.targets.items() if t != held)
            self._close_position(
                symbol, bar, st, OrderPurpose.EXIT, "target changed", strategy=leaving
            )
        st.intended = 0
        if desired != 0:
            entering = "+".join(name for name, t in st.targets.items() if t == desired)
            self._open_position(symbol, index, bar, st, desired, equity, entering)

    def _open_position(
        self,
        symbol: Symbol,
        index: int,
        bar: Bar,
        st: _SymbolState,
        direction: int,
        equity: float,
        strategy: str = "",
    ) -> None:
        atr_values = self.atr.get(symbol)
        atr = float(atr_values[index]) if atr_values is not None else None
        open_elsewhere, exposure_elsewhere = self.commitments(exclude=symbol)
        pos = self.portfolio.position(symbol)
        qty = self.risk.review_entry(
            bar.timestamp,
            symbol,
            price=bar.close,
            equity=equity,
            cost_rate=self.cost_rate,
            atr=atr,
            closed_trades=self.portfolio.closed_trades,
            open_positions=open_elsewhere,
            symbol_exposure=abs(pos.market_value) if pos.qty * direction > 0 else 0.0,
            total_exposure=exposure_elsewhere,
            instrument=self.settings.execution.instrument(symbol),
        )
        if qty <= 0.0:
            return
        st.intended = direction
        st.entry_atr = atr if atr is not None else math.nan
        side = Side.BUY if direction > 0 else Side.SELL
        if self._by_algo(symbol, side, qty, bar, OrderPurpose.ENTRY, strategy):
            return
        self._submit_market(
            symbol, side, qty, bar.timestamp, OrderPurpose.ENTRY, bar, "", strategy=strategy
        )

    def commitments(self, exclude: Symbol) -> tuple[int, float]:
        """Positions and gross exposure held or on their way (working entries) in other symbols.

        Under `next_open` an entry decided this bar is not a position until the next open; limits
        that ignored it would let every symbol enter at once. An operator's order that opens or
        adds counts like an entry.
        """
        count, exposure = 0, 0.0
        for symbol, st in self._states.items():
            if symbol == exclude:
                continue
            pos = self.portfolio.position(symbol)
            pending = sum(
                o.remaining_qty
                for o in self.venue.working_orders(symbol)
                if o.purpose is OrderPurpose.ENTRY
                or (o.purpose is OrderPurpose.MANUAL and pos.qty * o.side.sign >= 0)
            ) + self.algos.pending_entries(symbol)
            if self.portfolio.holds(symbol) or st.intended != 0 or pending > 0:
                count += 1
            price = pos.last_price if math.isfinite(pos.last_price) else 0.0
            exposure += abs(pos.market_value) + pending * price
        return count, exposure

    def _close_position(
        self,
        symbol: Symbol,
        bar: Bar,
        st: _SymbolState,
        purpose: OrderPurpose,
        reason: str,
        strategy: str = "",
    ) -> None:
        self._cancel_protective(symbol, bar.timestamp, st)
        self.algos.cancel_symbol(symbol, bar.timestamp, reason, STRATEGY_PURPOSES)
        for order in self.venue.working_orders(symbol):
            if order.order_type is OrderType.MARKET:  # e.g. the rest of a partially filled entry
                self.journal.record_order(
                    self.venue.cancel(order.client_order_id, bar.timestamp, reason)
                )
        pos = self.portfolio.position(symbol)
        st.intended = 0
        side = Side.SELL if pos.qty > 0 else Side.BUY
        if purpose is OrderPurpose.EXIT and self._by_algo(
            symbol, side, abs(pos.qty), bar, purpose, strategy
        ):
            return
        self._submit_market(
            symbol, side, abs(pos.qty), bar.timestamp, purpose, bar, reason, strategy=strategy
        )

    def _by_algo(
        self, symbol: Symbol, side: Side, qty: float, bar: Bar, purpose: OrderPurpose, strategy: str
    ) -> bool:
        """With `execution.algo` the strategies' entries (and/or target exits) are parents, not
        one market order. A parent too small to plan (below what the market trades) goes as one
        market order, as without the setting. Stops, take-profits, time exits, the kill switch
        and risk flattening stay single market orders: they must not wait."""
        algo = self.settings.execution.algo
        if algo is None or not algo.applies_to(purpose.value):
            return False
        duration = parse_span("duration", algo.duration)
        interval = parse_span("interval", algo.interval)
        weights = None
        if algo.name == "vwap":  # its profile: the named dataset's volume before this bar
            assert algo.profile is not None  # AlgoSettings requires one
            try:
                profile = dataset_profile(algo.profile, bar.timestamp, profile_bucket(interval))
            except PlanError:
                return False  # no history before now (a replay of older bars): one order
            weights = tuple(profile_weights(profile, slot_times(bar.timestamp, duration, interval)))
        request = AlgoRequest(
            symbol,
            side,
            repr(qty),
            duration,
            interval,
            algo.name,
            max_participation=algo.max_participation,
            weights=weights,
            purpose=purpose,
            strategy=strategy,
        )
        try:
            self.algos.accept(request, bar.timestamp, bar)
        except PlanError:
            return False
        return True

    # -- orders ----------------------------------------------------------------------------------
    def _new_order_id(
        self, symbol: Symbol, ts: pd.Timestamp, purpose: OrderPurpose
    ) -> ClientOrderId:
        key = (symbol, ts.value)
        seq = self._order_seq.get(key, 0)
        self._order_seq[key] = seq + 1
        return make_client_order_id(self.run_id, symbol, ts, purpose, seq)

    def _submit_market(
        self,
        symbol: Symbol,
        side: Side,
        qty: float,
        ts: pd.Timestamp,
        purpose: OrderPurpose,
        bar: Bar | None,
        reason: str,
        *,
        strategy: str = "",
        client_order_id: ClientOrderId | None = None,
    ) -> Order:
        order = Order(
            client_order_id=client_order_id or self._new_order_id(symbol, ts, purpose),
            symbol=symbol,
            side=side,
            qty=qty,
            order_type=OrderType.MARKET,
            created_at=ts,
            purpose=purpose,
            reason=reason,
            strategy=strategy,
        )
        self._place(order, ts)
        if not self._next_open and bar is not None:
            execution = self.venue.fill_at_close(order, bar)
            if execution is not None:
                self._process(execution, self.state(symbol))
        return order

    def _submit_resting(
        self,
        symbol: Symbol,
        side: Side,
        qty: float,
        order_type: OrderType,
        price: float,
        ts: pd.Timestamp,
        purpose: OrderPurpose,
        oco_group: str,
        strategy: str = "",
    ) -> ClientOrderId:
        order = Order(
            client_order_id=self._new_order_id(symbol, ts, purpose),
            symbol=symbol,
            side=side,
            qty=qty,
            order_type=order_type,
            created_at=ts,
            purpose=purpose,
            price=price,
            strategy=strategy,
            oco_group=oco_group,
        )
        self._place(order, ts)
        return order.client_order_id

    def _place(self, order: Order, ts: pd.Timestamp) -> None:
        """Journal the order before the venue sees it (durable first), then its acceptance. An
        order of no finite size or price is a bug upstream (settings and requests are finite by
        validation): it must fail here, before it reaches the journal or the venue."""
        if not math.isfinite(order.qty) or not math.isfinite(order.price or 0.0):
            raise ValueError(
                f"order {order.client_order_id}: qty {order.qty} and price {order.price} must be "
                "finite"
            )
        self.journal.record_order(order)
        self.venue.submit(order, ts)
        self.journal.record_order(order)

    def _cancel_protective(self, symbol: Symbol, ts: pd.Timestamp, st: _SymbolState) -> None:
        for order_id in (st.stop_id, st.take_profit_id):
            if order_id is not None and any(
                o.client_order_id == order_id for o in self.venue.working_orders(symbol)
            ):
                self.journal.record_order(self.venue.cancel(order_id, ts, "position closed"))
        st.stop_id = st.take_profit_id = None

    def _place_protective(self, symbol: Symbol, ts: pd.Timestamp, st: _SymbolState) -> None:
        """(Re)place the stop and take-profit of the whole position from its average entry."""
        risk = self.settings.risk
        pos = self.portfolio.position(symbol)
        self._cancel_protective(symbol, ts, st)
        direction = 1 if pos.qty > 0 else -1
        atr = st.entry_atr if math.isfinite(st.entry_atr) else None
        levels = exit_levels(risk, direction, pos.avg_entry, atr)
        st.fixed_stop = levels.stop
        st.extreme = pos.avg_entry
        stop = levels.stop
        if risk.trailing_stop_pct is not None:
            stop = tighter_stop(
                direction, stop, trailing_stop(direction, pos.avg_entry, risk.trailing_stop_pct)
            )
        exit_side = Side.SELL if direction > 0 else Side.BUY
        group = f"{symbol}@{ts.value}"
        qty = abs(pos.qty)
        # They protect the position of the strategies holding it ("" for an operator's position).
        holders = "+".join(name for name, t in st.targets.items() if t == direction)
        if stop is not None:
            purpose = (
                OrderPurpose.TRAILING_STOP
                if risk.trailing_stop_pct is not None and stop != levels.stop
                else OrderPurpose.STOP_LOSS
            )
            st.stop_id = self._submit_resting(
                symbol, exit_side, qty, OrderType.STOP, stop, ts, purpose, group, holders
            )
        if levels.take_profit is not None:
            st.take_profit_id = self._submit_resting(
                symbol,
                exit_side,
                qty,
                OrderType.LIMIT,
                levels.take_profit,
                ts,
                OrderPurpose.TAKE_PROFIT,
                group,
                holders,
            )

    # -- fills -------------------------------------------------------------------------------------
    def _process(self, ex: Execution, st: _SymbolState) -> None:
        """Book one execution: journal, portfolio, then what the fill means for the position."""
        order, fill = ex.order, ex.fill
        if ex.cut_from:  # the venue cut the size: the journal must say why
            self.risk.record_decision(
                fill.timestamp,
                fill.symbol,
                "insufficient_cash",
                "resize",
                ex.note,
                ex.cut_from,
                fill.qty,
            )
        self.journal.record_fill(fill)
        self.journal.record_order(order)
        for sibling in (*ex.cancelled_siblings, *ex.amended_siblings):
            self.journal.record_order(sibling)
        before = self.portfolio.position(fill.symbol).qty
        closed = self.portfolio.apply_fill(fill)
        self.algos.on_execution(order, fill.price, fill.fee)
        if order.purpose in PROTECTIVE_PURPOSES:
            self._on_protective_fill(fill, st, before)
        if closed is not None:
            self._on_trade_closed(closed, order, st)
            self._cancel_protective(fill.symbol, fill.timestamp, st)
        elif (
            order.purpose in (OrderPurpose.ENTRY, OrderPurpose.MANUAL)
            and before * fill.side.sign >= 0
        ):
            if before == 0.0:
                st.held_bars = 0
            self._place_protective(fill.symbol, fill.timestamp, st)

    def _on_protective_fill(self, fill: Fill, st: _SymbolState, before: float) -> None:
        """A stop or take-profit that fills, even partly (participation cap), ends the position:
        its rest keeps working at the same level, nothing may add to the position, and the
        direction is not re-entered until the target changes."""
        st.blocked = 1 if before > 0 else -1
        st.intended = 0
        # An entry remainder still working must not rebuild what the stop is closing.
        self.algos.cancel_symbol(
            fill.symbol, fill.timestamp, "stopped out", (OrderPurpose.ENTRY.value,)
        )
        for working in self.venue.working_orders(fill.symbol):
            if working.purpose is OrderPurpose.ENTRY:
                self.journal.record_order(
                    self.venue.cancel(working.client_order_id, fill.timestamp, "stopped out")
                )

    def _on_trade_closed(self, trade: Trade, order: Order, st: _SymbolState) -> None:
        trade.bars_held = st.held_bars
        self.risk.on_trade_closed(trade)
        if order.purpose in PROTECTIVE_PURPOSES:
            st.stop_id = st.take_profit_id = None
        st.held_bars = 0

    # -- accounts ----------------------------------------------------------------------------------
    def _affordable_qty(self, order: Order, price: float, fee_rate: float) -> float | None:
        """A buy that opens or adds to a long cannot spend more cash than there is (no borrowing)"""
        if order.side is not Side.BUY or self.portfolio.position(order.symbol).qty < 0:
            return None
        return max(self.portfolio.cash, 0.0) / (price * (1.0 + fee_rate))

    def trades(self) -> list[Trade]:
        """Closed trades in exit order, then the trades still open (exit_time None)."""
        return [*self.portfolio.closed_trades, *self.portfolio.open_trades()]

    def equity_series(self) -> pd.Series:
        if not self.equity_curve:
            return pd.Series(dtype=np.float64, name="equity")
        ts, values = zip(*self.equity_curve, strict=True)
        return pd.Series(values, index=pd.DatetimeIndex(ts, name="timestamp"), name="equity")
