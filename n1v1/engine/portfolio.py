"""Cash, positions and round-trip trades, updated only by fills.

Positions are signed quantities (negative = short) at an average cost: adding moves the average
entry, reducing books `(price − average entry) × qty` as realised profit. Equity is
`cash + Σ qty × last price`; the identity `equity == initial cash + Σ closed trade PnL + Σ open
trade PnL` (fees included in both) is a property test, partial exits included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from n1v1.domain import DustRule, Fill, OrderPurpose, Symbol, Trade

# Partial fills sum quantities such as 0.1 + 0.2; a residue below this share of the trade is zero.
_FLAT_TOLERANCE = 1e-9
# At a live exchange (a symbol with dust rules) a residue is real: 2 satoshi left by an exit of
# 25 BTC is below 1e-9 of it, and still in the account. Only float noise is zero there.
_NOISE_TOLERANCE = 1e-12


@dataclass(slots=True)
class Position:
    symbol: Symbol
    qty: float = 0.0
    avg_entry: float = 0.0
    realized_pnl: float = 0.0
    last_price: float = math.nan

    @property
    def is_open(self) -> bool:
        return self.qty != 0.0

    @property
    def market_value(self) -> float:
        return self.qty * self.last_price if self.qty else 0.0

    @property
    def unrealized_pnl(self) -> float:
        return (self.last_price - self.avg_entry) * self.qty if self.qty else 0.0


@dataclass(slots=True)
class _OpenTrade:
    trade: Trade
    gross_pnl: float = 0.0  # realised on the partial exits so far, before fees
    exit_qty: float = 0.0
    exit_value: float = 0.0
    entry_value: float = 0.0


@dataclass(slots=True)
class Portfolio:
    initial_cash: float
    cash: float = field(init=False)
    positions: dict[Symbol, Position] = field(default_factory=dict)
    fees_paid: float = 0.0
    traded_notional: float = 0.0
    closed_trades: list[Trade] = field(default_factory=list)
    _open: dict[Symbol, _OpenTrade] = field(default_factory=dict)
    # A live exchange's minimums (none on the simulated venue, whose lots leave no remainder).
    # A position below them stays on the books, as the exchange holds it, but is not traded:
    # its trade is closed and the engine decides as if flat (docs/live.md, "Dust").
    dust_rules: dict[Symbol, DustRule] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cash = self.initial_cash

    # -- queries -------------------------------------------------------------------------------
    def position(self, symbol: Symbol) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    @property
    def position_value(self) -> float:
        return sum(p.market_value for p in self.positions.values())

    @property
    def equity(self) -> float:
        return self.cash + self.position_value

    @property
    def realized_pnl(self) -> float:
        return sum(p.realized_pnl for p in self.positions.values())

    @property
    def unrealized_pnl(self) -> float:
        return sum(p.unrealized_pnl for p in self.positions.values())

    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.is_open]

    def holds(self, symbol: Symbol) -> bool:
        """Whether `symbol`'s position is one to trade: open and not dust."""
        pos = self.positions.get(symbol)
        return pos is not None and pos.is_open and not self.is_dust(pos)

    def is_dust(self, pos: Position) -> bool:
        rule = self.dust_rules.get(pos.symbol)
        if rule is None or not pos.is_open:
            return False
        qty = abs(pos.qty)
        value = qty * pos.last_price if math.isfinite(pos.last_price) else math.inf
        return qty < rule.min_qty or value < rule.min_cost

    def open_trade(self, symbol: Symbol) -> Trade | None:
        state = self._open.get(symbol)
        return self._marked(state, None) if state else None

    def open_trades(self, marks: Mapping[str, float] | None = None) -> list[Trade]:
        """The trades still open, each marked at `marks[symbol]` (else its position's last price):
        `open_qty` is the quantity still held and `pnl` the profit booked on partial exits plus
        the remainder at the mark, net of every fee paid so far."""
        marks = marks or {}
        return [self._marked(s, marks.get(s.trade.symbol)) for s in self._open.values()]

    def _marked(self, state: _OpenTrade, mark: float | None) -> Trade:
        trade = state.trade
        pos = self.positions[trade.symbol]
        price = pos.last_price if mark is None else mark
        trade.open_qty = abs(pos.qty)
        trade.pnl = state.gross_pnl + (price - pos.avg_entry) * pos.qty - trade.fees
        return trade

    # -- updates -------------------------------------------------------------------------------
    def mark(self, symbol: Symbol, price: float) -> None:
        self.position(symbol).last_price = price

    def apply_fill(self, fill: Fill) -> Trade | None:
        """Book a fill; returns the trade it closed, if any."""
        pos = self.position(fill.symbol)
        signed = fill.qty * fill.side.sign
        self.cash -= signed * fill.price + fill.fee
        self.fees_paid += fill.fee
        self.traded_notional += fill.qty * fill.price
        if math.isnan(pos.last_price):
            pos.last_price = fill.price

        if pos.qty == 0.0 or (pos.qty > 0) == (signed > 0):
            self._add(pos, fill, fill.qty, fill.fee)
            return None
        if fill.symbol not in self._open:  # only dust is held: this fill takes it first
            self._reduce_dust(pos, fill)
            return None

        closing = min(fill.qty, abs(pos.qty))
        closing_fee = fill.fee * closing / fill.qty
        closed = self._reduce(pos, fill, closing, closing_fee)
        rest = fill.qty - closing
        if rest > fill.qty * self._tolerance(fill.symbol):
            self._add(pos, fill, rest, fill.fee - closing_fee)  # a flip in one fill
        return closed

    def _add(self, pos: Position, fill: Fill, qty: float, fee: float) -> None:
        state = self._open.get(fill.symbol)
        if state is None:
            trade = Trade(
                symbol=fill.symbol,
                side=fill.side,
                qty=0.0,
                entry_time=fill.timestamp,
                entry_price=fill.price,
            )
            state = self._open[fill.symbol] = _OpenTrade(trade)
        old = abs(pos.qty)
        pos.avg_entry = (pos.avg_entry * old + fill.price * qty) / (old + qty)
        pos.qty += qty * fill.side.sign
        state.entry_value += fill.price * qty
        state.trade.qty += qty
        state.trade.entry_price = state.entry_value / state.trade.qty
        state.trade.fees += fee

    def _reduce(self, pos: Position, fill: Fill, qty: float, fee: float) -> Trade | None:
        state = self._open[fill.symbol]
        direction = 1.0 if pos.qty > 0 else -1.0
        gross = (fill.price - pos.avg_entry) * qty * direction
        pos.realized_pnl += gross - fee
        pos.qty -= qty * direction
        state.gross_pnl += gross
        state.exit_qty += qty
        state.exit_value += fill.price * qty
        state.trade.fees += fee
        remainder = abs(pos.qty) > state.trade.qty * self._tolerance(fill.symbol)
        if remainder and not self.is_dust(pos):
            return None
        if not remainder:
            pos.qty = 0.0
            pos.avg_entry = 0.0
        # else dust: the trade ends here, the books keep what the exchange holds
        trade = state.trade
        trade.open_qty = 0.0
        trade.exit_time = fill.timestamp
        trade.exit_price = state.exit_value / state.exit_qty
        trade.pnl = state.gross_pnl - trade.fees
        trade.exit_reason = _exit_reason(fill.purpose)
        del self._open[fill.symbol]
        self.closed_trades.append(trade)
        return trade

    def _tolerance(self, symbol: Symbol) -> float:
        return _NOISE_TOLERANCE if symbol in self.dust_rules else _FLAT_TOLERANCE

    def _reduce_dust(self, pos: Position, fill: Fill) -> None:
        """A fill against a dust position with no trade open: it takes the dust first (its
        profit booked to the position), the rest opens a trade the other way."""
        direction = 1.0 if pos.qty > 0 else -1.0
        closing = min(fill.qty, abs(pos.qty))
        fee = fill.fee * closing / fill.qty
        pos.realized_pnl += (fill.price - pos.avg_entry) * closing * direction - fee
        pos.qty -= closing * direction
        if abs(pos.qty) <= closing * _NOISE_TOLERANCE:
            pos.qty = 0.0
            pos.avg_entry = 0.0
        rest = fill.qty - closing
        if rest > fill.qty * _NOISE_TOLERANCE:
            self._add(pos, fill, rest, fill.fee - fee)


def _exit_reason(purpose: OrderPurpose) -> str:
    return "signal" if purpose in (OrderPurpose.EXIT, OrderPurpose.ENTRY) else purpose.value
