"""A trading session's whole state as a versioned JSON document, and back (never pickle).

A snapshot holds everything the loop needs to go on exactly as if it had replayed every step from
the first: the account (cash, positions, open and closed trades, working orders with their state
machine fields and OCO groups, the counters behind deterministic client order ids, the engine's
per-symbol state: held bars, stops, trailing extremes, targets), the risk state (breaker, daily
loss, kill switch, pause), each strategy's shadow account, the last `window` bars of each symbol
with the bar counts (bar numbers go on), the live config, the slots standing aside, the step, the
last bars, and each signal source's own state (`StatefulSource`, n1v1/engine/signals.py).

Format 1, documented field by field in docs/store.md ("Snapshots"). Floats are JSON numbers in
their shortest exact form (orjson), so they round-trip bit for bit; NaN and infinities, which JSON
lacks, are the strings "nan", "inf" and "-inf". Times are integer nanoseconds since the epoch, UTC.
Objects keep their insertion order, because the engine's sums and "+"-joined strategy names
follow it.

Left out on purpose, because nothing reads them again: the engine's equity curve and journal
(outputs, in the store), ATR values of past bars (only the newest bar's is read, and it is
computed when that bar arrives), fill counters of orders no longer working, order-id counters of
past bar times, and bars older than the window (`BarHistory.widen` fetches them from the bar log if
a strategy joins that needs them).

`restore` checks what it loads: the format, the configuration it was taken under (a fingerprint
of the settings, strategies, window and symbols: a changed configuration replays from the start,
where the stored outputs check it) and that the restored state encodes to the very same bytes.
This module reads and sets the private fields of the engine's parts on purpose: one place knows
the whole state, and tests/test_snapshots.py fails when a part gains a field this module does not
know.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd

from n1v1.domain import (
    Bar,
    ClientOrderId,
    Order,
    OrderPurpose,
    OrderStatus,
    OrderType,
    Side,
    Symbol,
    Trade,
)
from n1v1.engine.engine import TradingEngine, _SymbolState
from n1v1.engine.portfolio import Position, _OpenTrade
from n1v1.execution.algos import parent_from_dict, parent_to_dict
from n1v1.execution.live_venue import LiveVenue
from n1v1.live.config import LiveConfig, effective_settings
from n1v1.store.journal import StoreReader
from n1v1.store.snapshots import JournalMarks, SnapshotError, StoredSnapshot

if TYPE_CHECKING:
    from n1v1.live.session import TradingSession

FORMAT = 1
# A trade as a row (the bulk of a long session's snapshot: lists, not objects)
TRADE_FIELDS = (
    "symbol",
    "side",
    "qty",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "pnl",
    "fees",
    "exit_reason",
    "bars_held",
    "open_qty",
)

Json = dict[str, Any]


# -- scalars ---------------------------------------------------------------------------------------
def _num(x: float) -> float | str:
    x = float(x)
    return x if math.isfinite(x) else repr(x)  # "nan", "inf", "-inf"


def _opt(x: float | None) -> float | str | None:
    return None if x is None else _num(x)


def _opt_float(v: float | str | None) -> float | None:
    return None if v is None else float(v)


def _ns(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).value)


def _ts(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _bar_row(bar: Bar) -> list[Any]:
    return [_ns(bar.timestamp), *(_num(v) for v in bar[1:])]


def _bar(row: list[Any]) -> Bar:
    return Bar(_ts(row[0]), *(float(v) for v in row[1:]))


def _trade_row(t: Trade) -> list[Any]:
    if t.entry_fills:
        raise ValueError(f"{t.symbol} trade: entry_fills are not kept by format {FORMAT}")
    return [
        t.symbol,
        "buy" if t.side is Side.BUY else "sell",  # not `.value`: a long session has many trades
        _num(t.qty),
        _ns(t.entry_time),
        _num(t.entry_price),
        None if t.exit_time is None else _ns(t.exit_time),
        _opt(t.exit_price),
        _num(t.pnl),
        _num(t.fees),
        t.exit_reason,
        int(t.bars_held),
        _num(t.open_qty),
    ]


def _trade(row: list[Any]) -> Trade:
    if len(row) != len(TRADE_FIELDS):
        raise ValueError(f"a trade row has {len(row)} fields, format {FORMAT} has {TRADE_FIELDS}")
    symbol, side, qty, entry, entry_price, exit_, exit_price, pnl, fees, reason, held, open_ = row
    return Trade(
        symbol=Symbol(symbol),
        side=Side(side),
        qty=float(qty),
        entry_time=_ts(entry),
        entry_price=float(entry_price),
        exit_time=None if exit_ is None else _ts(exit_),
        exit_price=_opt_float(exit_price),
        pnl=float(pnl),
        fees=float(fees),
        exit_reason=reason,
        bars_held=int(held),
        open_qty=float(open_),
    )


def _order(o: Order) -> Json:
    return {
        "client_order_id": o.client_order_id,
        "symbol": o.symbol,
        "side": o.side.value,
        "qty": _num(o.qty),
        "order_type": o.order_type.value,
        "created_at": _ns(o.created_at),
        "purpose": o.purpose.value,
        "price": _opt(o.price),
        "strategy": o.strategy,
        "oco_group": o.oco_group,
        "status": o.status.value,
        "filled_qty": _num(o.filled_qty),
        "avg_fill_price": _num(o.avg_fill_price),
        "reason": o.reason,
        "updated_at": None if o.updated_at is None else _ns(o.updated_at),
    }


def _order_from(d: Json) -> Order:
    return Order(
        client_order_id=ClientOrderId(d["client_order_id"]),
        symbol=Symbol(d["symbol"]),
        side=Side(d["side"]),
        qty=float(d["qty"]),
        order_type=OrderType(d["order_type"]),
        created_at=_ts(d["created_at"]),
        purpose=OrderPurpose(d["purpose"]),
        price=_opt_float(d["price"]),
        strategy=d["strategy"],
        oco_group=d["oco_group"],
        status=OrderStatus(d["status"]),
        filled_qty=float(d["filled_qty"]),
        avg_fill_price=float(d["avg_fill_price"]),
        reason=d["reason"],
        updated_at=None if d["updated_at"] is None else _ts(d["updated_at"]),
    )


# -- the engine (the account and each shadow) ------------------------------------------------------
class TradeRows:
    """Closed trades never change, so each account's rows are encoded once, as they close."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[list[Trade], list[list[Any]]]] = {}

    def rows(self, account: str, closed: list[Trade]) -> list[list[Any]]:
        cached = self._rows.get(account)
        if cached is None or cached[0] is not closed or len(cached[1]) > len(closed):
            cached = (closed, [])
        rows = cached[1]
        rows.extend(_trade_row(t) for t in closed[len(rows) :])
        self._rows[account] = (closed, rows)
        return rows


def _engine(e: TradingEngine, last_time: int | None, closed_rows: list[list[Any]]) -> Json:
    p, risk, venue = e.portfolio, e.risk, e.venue
    breaker, daily = risk.breaker, risk.daily
    return {
        "step": e.step,
        "currency": e.currency,
        "exposure_bars": e.exposure_bars,
        "initial_cash": _num(p.initial_cash),
        "cash": _num(p.cash),
        "fees_paid": _num(p.fees_paid),
        "traded_notional": _num(p.traded_notional),
        "positions": [
            [s, _num(x.qty), _num(x.avg_entry), _num(x.realized_pnl), _num(x.last_price)]
            for s, x in p.positions.items()
        ],
        "open_trades": [
            [
                s,
                _trade_row(o.trade),
                _num(o.gross_pnl),
                _num(o.exit_qty),
                _num(o.exit_value),
                _num(o.entry_value),
            ]
            for s, o in p._open.items()
        ],
        "closed_trades": closed_rows,
        "working_orders": [
            {**_order(o), "fills": venue._fill_seq.get(o.client_order_id, 0), **_held(venue, o)}
            for o in venue._working.values()
        ],
        # client order ids count per (symbol, bar time); only the last bar time can be used again
        "order_seq": [
            [s, ts, n]
            for (s, ts), n in e._order_seq.items()
            if last_time is not None and ts >= last_time
        ],
        "symbols": [[s, _symbol_state(st)] for s, st in e._states.items()],
        "algos": {
            "accepted": e.algos.accepted,
            "parents": [parent_to_dict(x) for x in e.algos.parents.values()],
        },
        "risk": {
            "paused_reason": risk.paused_reason,
            "previous_equity": _opt(risk._previous_equity),
            "breaker": {
                "peak": _num(breaker.peak),
                "consecutive_losses": breaker.consecutive_losses,
                "tripped_at": breaker.tripped_at,
                "reason": breaker.reason,
            },
            "daily": {
                "day": None if daily.day is None else daily.day.isoformat(),  # type: ignore[attr-defined]
                "day_start_equity": _num(daily.day_start_equity),
                "last_equity": _num(daily.last_equity),
                "halted": daily.halted,
            },
            "kill_switch": {"engaged": risk.kill_switch.engaged, "reason": risk.kill_switch.reason},
        },
    }


def _held(venue: Any, order: Any) -> Json:
    """A live venue's protective order not sent to the exchange (n1v1/execution/live_venue.py)
    says so; other rows are as before held orders existed."""
    if isinstance(venue, LiveVenue) and venue.is_held(order.client_order_id):
        return {"held": True}
    return {}


def _symbol_state(st: _SymbolState) -> Json:
    return {
        "index": st.index,
        "intended": st.intended,
        "blocked": st.blocked,
        "targets": [[name, target] for name, target in st.targets.items()],
        "held_bars": st.held_bars,
        "entry_atr": _num(st.entry_atr),
        "extreme": _num(st.extreme),
        "fixed_stop": _opt(st.fixed_stop),
        "stop_id": st.stop_id,
        "take_profit_id": st.take_profit_id,
        "last_bar": None if st.last_bar is None else _bar_row(st.last_bar),
    }


def _restore_engine(e: TradingEngine, d: Json) -> None:
    p, risk, venue = e.portfolio, e.risk, e.venue
    if float(d["initial_cash"]) != p.initial_cash:
        raise ValueError(f"initial cash {d['initial_cash']} is not the configured {p.initial_cash}")
    e.step, e.currency, e.exposure_bars = int(d["step"]), d["currency"], int(d["exposure_bars"])
    p.cash = float(d["cash"])
    p.fees_paid = float(d["fees_paid"])
    p.traded_notional = float(d["traded_notional"])
    p.positions = {
        Symbol(s): Position(Symbol(s), float(q), float(a), float(r), float(last))
        for s, q, a, r, last in d["positions"]
    }
    p._open = {
        Symbol(s): _OpenTrade(_trade(row), float(g), float(xq), float(xv), float(ev))
        for s, row, g, xq, xv, ev in d["open_trades"]
    }
    p.closed_trades = [_trade(row) for row in d["closed_trades"]]
    venue._working = {}
    venue._fill_seq = {}
    if isinstance(venue, LiveVenue):
        venue._held = set()
    for row in d["working_orders"]:
        order = _order_from(row)
        venue._working[order.client_order_id] = order
        if row["fills"]:
            venue._fill_seq[order.client_order_id] = int(row["fills"])
        if row.get("held"):  # absent in snapshots from before held orders: none were held
            if not isinstance(venue, LiveVenue):
                raise ValueError(f"order {order.client_order_id}: held, but the venue is simulated")
            venue._held.add(order.client_order_id)
    e._order_seq = {(Symbol(s), int(ts)): int(n) for s, ts, n in d["order_seq"]}
    e._states = {Symbol(s): _symbol_state_from(st) for s, st in d["symbols"]}
    algos = d.get("algos", {"accepted": 0, "parents": []})  # none before parent orders existed
    e.algos.restore([parent_from_dict(x) for x in algos["parents"]], int(algos["accepted"]))
    r = d["risk"]
    risk.paused_reason = r["paused_reason"]
    risk._previous_equity = _opt_float(r["previous_equity"])
    b = r["breaker"]
    risk.breaker.peak = float(b["peak"])
    risk.breaker.consecutive_losses = int(b["consecutive_losses"])
    risk.breaker.tripped_at = b["tripped_at"]
    risk.breaker.reason = b["reason"]
    daily = r["daily"]
    risk.daily.day = None if daily["day"] is None else dt.date.fromisoformat(daily["day"])
    risk.daily.day_start_equity = float(daily["day_start_equity"])
    risk.daily.last_equity = float(daily["last_equity"])
    risk.daily.halted = bool(daily["halted"])
    risk.kill_switch.engaged = bool(r["kill_switch"]["engaged"])
    risk.kill_switch.reason = r["kill_switch"]["reason"]


def _symbol_state_from(d: Json) -> _SymbolState:
    return _SymbolState(
        index=int(d["index"]),
        intended=int(d["intended"]),
        blocked=int(d["blocked"]),
        targets={name: int(target) for name, target in d["targets"]},
        held_bars=int(d["held_bars"]),
        entry_atr=float(d["entry_atr"]),
        extreme=float(d["extreme"]),
        fixed_stop=_opt_float(d["fixed_stop"]),
        stop_id=None if d["stop_id"] is None else ClientOrderId(d["stop_id"]),
        take_profit_id=None if d["take_profit_id"] is None else ClientOrderId(d["take_profit_id"]),
        last_bar=None if d["last_bar"] is None else _bar(d["last_bar"]),
    )


# -- the session -----------------------------------------------------------------------------------
def fingerprint(session: TradingSession) -> str:
    """What a snapshot's state was built under: settings (log level aside), strategies, window,
    symbols. A snapshot taken under another configuration is not restored."""
    what = {
        "settings": session.base_settings.model_dump(mode="json", exclude={"log_level"}),
        "strategies": [slot.model_dump(mode="json") for slot in session.slots],
        "window": session.window,
        "symbols": list(session.feed.symbols),
        "currency": session.currency,
    }
    return hashlib.sha256(orjson.dumps(what, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _floats(block: np.ndarray) -> list[Any]:
    if np.isfinite(block).all():
        return block.tolist()
    return [[_num(v) for v in row] for row in block.tolist()]


def encode(session: TradingSession, marks: JournalMarks, trades: TradeRows | None = None) -> bytes:
    """The session's state as the snapshot document (format `FORMAT`)."""
    trades = trades if trades is not None else TradeRows()
    last_time = None if session.last_ts is None else _ns(session.last_ts)
    history = session.history
    tails = []
    for symbol in history.symbols():
        first, times, rows = history.tail(symbol)
        tails.append([symbol, first, times.tolist(), _floats(rows)])
    assert session.shadows is not None
    engine = session.engine
    sources = []
    for source in engine.sources:
        state_of = getattr(source, "snapshot_state", None)
        state = state_of() if state_of is not None else {}
        if state:
            sources.append([source.name, state])
    document = {
        "format": FORMAT,
        "step": session.steps_done,
        "config": fingerprint(session),
        "marks": {
            "step": marks.step,
            "command_id": marks.command_id,
            "fill_id": marks.fill_id,
            "order_event_id": marks.order_event_id,
        },
        "last_time": last_time,
        "last_bars": [[s, _bar_row(bar)] for s, bar in session.last_bars.items()],
        "live_config": session.live.model_dump(mode="json"),
        "aside": dict(session.aside),
        "history": {"window": history.window, "symbols": tails},
        "atr_lengths": [[s, len(values)] for s, values in engine.atr.items()],
        "sources": sources,
        "account": _engine(engine, last_time, trades.rows("", engine.portfolio.closed_trades)),
        "shadows": [
            [name, _engine(e, last_time, trades.rows(name, e.portfolio.closed_trades))]
            for name, e in session.shadows.engines.items()
        ],
    }
    return orjson.dumps(document)


def check_format(stored: StoredSnapshot) -> None:
    """SnapshotError unless this code reads the snapshot's format (checked before loading it)."""
    if stored.format != FORMAT:
        raise SnapshotError(
            f"snapshot {stored.id} (step {stored.step}) is of format {stored.format}; this code "
            f"reads format {FORMAT}"
        )


def restore(session: TradingSession, document: bytes, stored: StoredSnapshot) -> JournalMarks:
    """Set `session` to the snapshot's state; returns its journal marks. SnapshotError when it is
    of another format or configuration, does not parse, or does not encode back to itself."""
    where = f"snapshot {stored.id} (step {stored.step})"
    check_format(stored)
    try:
        doc = orjson.loads(document)
    except orjson.JSONDecodeError as exc:
        raise SnapshotError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise SnapshotError(f"{where}: its document is of format {found!r}, not {FORMAT}")
    if doc.get("step") != stored.step:
        raise SnapshotError(f"{where}: its document says step {doc.get('step')!r}")
    if doc.get("config") != fingerprint(session):
        raise SnapshotError(
            f"{where}: taken under another configuration (settings, strategies, window or "
            "symbols changed since)"
        )
    try:
        marks = JournalMarks(**doc["marks"])
        _restore_session(session, doc)
        again = encode(session, marks)
    except Exception as exc:
        raise SnapshotError(f"{where}: cannot restore it: {type(exc).__name__}: {exc}") from exc
    if again != document:
        raise SnapshotError(f"{where}: the restored state does not encode back to the snapshot")
    return marks


def _restore_session(session: TradingSession, doc: Json) -> None:
    session._reset_engine()
    live = LiveConfig.model_validate(doc["live_config"])
    session.live = live
    session.settings = effective_settings(session.base_settings, live)
    session.engine.update_settings(session.settings)
    assert session.shadows is not None
    session.shadows.update_settings(session.settings)
    session.aside = dict(doc["aside"])
    session._install_strategies()

    history = session.history
    history.window = int(doc["history"]["window"])
    for symbol, first, times, rows in doc["history"]["symbols"]:
        block = np.array([[float(v) for v in row] for row in rows], dtype=np.float64).reshape(-1, 5)
        history.restore(symbol, int(first), np.array(times, dtype=np.int64), block)
    for symbol, length in doc["atr_lengths"]:
        session.engine.atr[Symbol(symbol)] = np.full(int(length), np.nan)  # shared with shadows

    states: Mapping[str, Any] = dict(doc["sources"])
    for source in session.engine.sources:
        state = states.get(source.name, {})
        restore_state = getattr(source, "restore_state", None)
        if restore_state is not None:
            restore_state(state)
        elif state:
            raise ValueError(f"source {source.name} has state {state} but cannot take it back")

    history.older_bars = StoreReader(session.store).bars_before  # a joining strategy may need more
    _restore_engine(session.engine, doc["account"])
    shadows = dict(doc["shadows"])
    if list(shadows) != list(session.shadows.engines):
        expected = list(session.shadows.engines)
        raise ValueError(f"shadow accounts {list(shadows)}, expected {expected}")
    for name, engine in session.shadows.engines.items():
        _restore_engine(engine, shadows[name])

    session.steps_done = int(doc["step"])
    session.last_ts = None if doc["last_time"] is None else _ts(doc["last_time"])
    session.last_bars = {s: _bar(row) for s, row in doc["last_bars"]}
