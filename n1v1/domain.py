"""Value types shared by every layer: orders and their state machine, fills,
signals, risk decisions.

The hot loops (fast backtest path, sweeps) work on NumPy arrays; these objects live at the
boundaries and in the event-driven engine, where clarity matters more than nanoseconds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, NewType

import pandas as pd

Symbol = NewType("Symbol", str)
ClientOrderId = NewType("ClientOrderId", str)


class Bar(NamedTuple):
    """One OHLCV bar, labelled by its open time (UTC)."""

    timestamp: pd.Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class Liquidity(StrEnum):
    """Whether a fill added liquidity (maker fee) or took it (taker fee)."""

    MAKER = "maker"
    TAKER = "taker"


class OrderStatus(StrEnum):
    NEW = "new"
    # A live venue's order whose intent is stored and which is (being) sent to the exchange, no
    # answer read yet; UNKNOWN: the call failed in a way that does not prove the order absent (a
    # timeout, a dropped connection, a 5xx), so it is found by its client id, never sent again.
    SUBMITTING = "submitting"
    UNKNOWN = "unknown"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_open(self) -> bool:
        return self in _OPEN


_OPEN = frozenset(
    {
        OrderStatus.SUBMITTING,
        OrderStatus.UNKNOWN,
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIALLY_FILLED,
    }
)
_TERMINAL = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)

# The only legal moves of an order. Anything else is a bug in the engine or a venue adapter and must
# fail loudly rather than corrupt positions.
LEGAL_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.SUBMITTING, OrderStatus.REJECTED}
    ),
    # a live venue's answers: an acknowledgement, a definite refusal or an ambiguous failure
    OrderStatus.SUBMITTING: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.REJECTED, OrderStatus.UNKNOWN}
    ),
    # found at the exchange by its client id, or proven never to have reached it
    OrderStatus.UNKNOWN: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
    # (SUBMITTING: a live venue's held stop or take-profit, reached by a bar, is sent now)
    OrderStatus.SUBMITTED: frozenset(
        {
            OrderStatus.SUBMITTING,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.REJECTED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.PARTIALLY_FILLED: frozenset(
        {
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
            OrderStatus.CANCELLED,
            OrderStatus.EXPIRED,
        }
    ),
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.EXPIRED: frozenset(),
}


class IllegalOrderTransition(RuntimeError):
    """Raised when code tries to move an order along an edge the state machine does not have."""


class OrderPurpose(StrEnum):
    """Why the engine placed an order; kept on the order so journals and reports can explain it."""

    ENTRY = "entry"
    EXIT = "exit"
    STOP_LOSS = "stop_loss"
    TAKE_PROFIT = "take_profit"
    TRAILING_STOP = "trailing_stop"
    TIME_EXIT = "time_exit"
    KILL_SWITCH = "kill_switch"
    RISK_FLATTEN = "risk_flatten"  # a breached drawdown or daily-loss limit with flatten_on_breach
    MANUAL = "manual"
    END_OF_DATA = "end_of_data"  # backtest.close_at_end: flat at the last close


@dataclass(frozen=True, slots=True)
class DustRule:
    """The least an exchange trades of a symbol: a quantity (its step or minimum, the larger)
    and a value in the quote currency (its minimum notional). A position below either cannot
    be sold: it is *dust* (n1v1/execution/exchange_rules.py `dust_rule`)."""

    min_qty: float
    min_cost: float = 0.0


# The orders that protect an open position: they rest until the price reaches them.
PROTECTIVE_PURPOSES = frozenset(
    {OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT, OrderPurpose.TRAILING_STOP}
)


def make_client_order_id(
    run_id: str, symbol: str, timestamp: pd.Timestamp, purpose: OrderPurpose, seq: int
) -> ClientOrderId:
    """Deterministic id: the same decision always yields the same id, so a retried
    submit is idempotent.

    32 characters of [0-9a-f] and "n" pass unchanged as the client id of Binance, OKX and Bybit;
    `n1v1.execution.client_ids` derives the form other exchanges require (a UUID for Kraken and
    Coinbase) from it, deterministically.
    """
    key = f"{run_id}|{symbol}|{timestamp.value}|{purpose.value}|{seq}"
    return ClientOrderId("n1" + hashlib.sha256(key.encode()).hexdigest()[:30])


@dataclass(slots=True)
class Order:
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: float
    order_type: OrderType
    created_at: pd.Timestamp
    purpose: OrderPurpose = OrderPurpose.ENTRY
    price: float | None = None  # limit price for LIMIT, trigger price for STOP
    strategy: str = ""
    oco_group: str = (
        ""  # orders sharing a group cancel each other when one fills (stop + take-profit)
    )
    status: OrderStatus = OrderStatus.NEW
    filled_qty: float = 0.0
    avg_fill_price: float = 0.0
    reason: str = ""
    updated_at: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        if not self.qty > 0:
            raise ValueError(f"order {self.client_order_id}: qty must be > 0, got {self.qty}")
        if self.order_type is not OrderType.MARKET and (self.price is None or not self.price > 0):
            raise ValueError(
                f"order {self.client_order_id}: {self.order_type.value} order needs a price > 0"
            )

    @property
    def remaining_qty(self) -> float:
        return self.qty - self.filled_qty

    def transition(self, new_status: OrderStatus, at: pd.Timestamp, reason: str = "") -> None:
        if new_status not in LEGAL_TRANSITIONS[self.status]:
            raise IllegalOrderTransition(
                f"order {self.client_order_id}: illegal transition "
                f"{self.status.value} -> {new_status.value}"
            )
        self.status = new_status
        self.updated_at = at
        if reason:
            self.reason = reason

    def apply_fill(self, qty: float, price: float, at: pd.Timestamp) -> None:
        """Record an execution; moves to FILLED when nothing remains (within float tolerance)."""
        if qty <= 0 or qty > self.remaining_qty * (1 + 1e-12) + 1e-15:
            raise ValueError(
                f"order {self.client_order_id}: fill qty {qty} outside (0, {self.remaining_qty}]"
            )
        total = self.filled_qty + qty
        self.avg_fill_price = (self.avg_fill_price * self.filled_qty + price * qty) / total
        self.filled_qty = total
        done = self.remaining_qty <= self.qty * 1e-12
        if done:
            self.filled_qty = self.qty
        self.transition(OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED, at)


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    qty: float
    price: float
    fee: float
    liquidity: Liquidity
    timestamp: pd.Timestamp
    purpose: OrderPurpose = OrderPurpose.ENTRY
    seq: int = 0  # fill number within its order; (client_order_id, seq) is unique

    @property
    def notional(self) -> float:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's target position for a symbol at a bar's close: -1 short, 0 flat, +1 long."""

    timestamp: pd.Timestamp
    symbol: Symbol
    strategy: str
    target: int


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """What a risk rule did to a proposed order: approved, resized or rejected, and why."""

    timestamp: pd.Timestamp
    symbol: Symbol
    rule: str
    action: str  # "approve" | "resize" | "reject" | "halt" | "flatten"
    reason: str
    requested_qty: float = 0.0
    approved_qty: float = 0.0


@dataclass(frozen=True, slots=True)
class EquityPoint:
    timestamp: pd.Timestamp
    cash: float
    position_value: float
    equity: float


@dataclass(slots=True)
class Trade:
    """A round trip: from flat to a position and back to flat (or to the end of the data).

    `qty` is the quantity entered (all entry fills); `open_qty` the quantity still held, 0 once the
    trade is closed. `pnl` is net of every fee paid so far; prices include slippage. A trade still
    open shows the profit already booked on its partial exits plus the remainder marked to the
    last price (`n1v1.engine.portfolio.Portfolio.open_trades`).
    """

    symbol: Symbol
    side: Side  # BUY for a long trade, SELL for a short one
    qty: float
    entry_time: pd.Timestamp
    entry_price: float
    exit_time: pd.Timestamp | None = None
    exit_price: float | None = None
    pnl: float = 0.0
    fees: float = 0.0
    exit_reason: str = ""
    bars_held: int = 0
    open_qty: float = 0.0
    entry_fills: list[Fill] = field(default_factory=list, repr=False)

    def to_dict(
        self, entry_iso: str | None = None, exit_iso: str | None = None
    ) -> dict[str, object]:
        """Plain JSON data. `entry_iso`/`exit_iso`: the times already formatted as isoformat
        (a writer of many trades formats them in one vectorised pass)."""
        if exit_iso is None and self.exit_time is not None:
            exit_iso = self.exit_time.isoformat()
        return {
            "symbol": self.symbol,
            "side": "long" if self.side is Side.BUY else "short",
            "qty": self.qty,
            "entry_time": entry_iso if entry_iso is not None else self.entry_time.isoformat(),
            "entry_price": self.entry_price,
            "exit_time": exit_iso,
            "exit_price": self.exit_price,
            "pnl": self.pnl,
            "fees": self.fees,
            "exit_reason": self.exit_reason,
            "bars_held": self.bars_held,
            "open_qty": self.open_qty,
        }
