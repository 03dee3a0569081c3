"""A live session at an exchange: the real session, venue, broker and ccxt client against the fake
Binance (tests/fake_binance), checked against what the exchange itself holds afterwards."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fake_binance import FakeBinance
from fake_binance.faults import Fault
from live_support import (
    CASH,
    EXITS,
    MARKET,
    SETTINGS,
    SYMBOL,
    bars,
    exchange,
    live_session,
    received_qty,
    run_until_settled,
)

from n1v1.domain import PROTECTIVE_PURPOSES, OrderStatus
from n1v1.store import create_store
from n1v1.store.journal import StoreReader

HERE = Path(__file__).resolve().parent


@pytest.fixture
def fake() -> Any:
    server = exchange()
    yield server
    server.close()


def account(server: FakeBinance) -> Any:
    return server.add_account("desk", {"USDT": CASH, "BTC": 0})


def check_books_agree(server: FakeBinance, acct: Any, store_url: str) -> dict[str, Any]:
    """Exactly one exchange order per intent; the journal's fills are the exchange's trades; the
    stored position and the engine's cash are the exchange's balances."""
    store = create_store(store_url)
    try:
        reader = StoreReader(store)
        orders = reader.latest_orders()
        fills = reader.fills()
        positions = {p["symbol"]: p for p in reader.positions()}
    finally:
        store.dispose()
    at_exchange = server.orders(acct)
    per_id = Counter(o.client_order_id for o in at_exchange)
    assert per_id and max(per_id.values()) == 1, f"an intent placed twice: {per_id.most_common(3)}"
    sent = {cid for cid, o in orders.items() if cid in per_id}
    assert set(per_id) == sent, "an exchange order the journal does not know"
    for cid, order in orders.items():
        if cid not in per_id:  # never reached the exchange: refused before or proven absent,
            # or a stop or take-profit held by the venue and cancelled before a bar reached it
            # (or still held at the end)
            held = order.purpose in PROTECTIVE_PURPOSES and order.status in (
                OrderStatus.CANCELLED,
                OrderStatus.SUBMITTED,
            )
            assert held or order.status is OrderStatus.REJECTED, (cid, order.status, order.reason)
    trades = server.trades(acct)
    assert len(fills) == len(trades), fill_mismatch(fills, trades, store_url)
    # the books hold what the account holds: a buy's fee in BTC is BTC not received
    assert math.isclose(sum(f.qty for f in fills), float(received_qty(trades)), abs_tol=1e-9)
    btc_free, btc_locked = server.balance(acct, "BTC")
    held = positions.get(SYMBOL, {}).get("qty", 0.0)
    assert Decimal(str(held)).quantize(Decimal("1e-8")) == (btc_free + btc_locked)
    usdt_free, usdt_locked = server.balance(acct, "USDT")
    paid = sum(f.price * f.qty * (1 if f.side.value == "buy" else -1) + f.fee for f in fills)
    assert math.isclose(CASH - paid, float(usdt_free + usdt_locked), abs_tol=1e-6)
    return {"orders": len(orders), "exchange_orders": len(at_exchange), "fills": len(fills)}


def fill_mismatch(fills: list[Any], trades: list[Any], store_url: str) -> str:
    """Which orders' journal fills differ from their exchange trades, with what the store heard
    from the exchange about them (and at which step): a failure understood from CI's log alone."""
    booked = Counter(f.client_order_id for f in fills)
    executed = Counter(tr.order.client_order_id for tr in trades)
    differ = sorted(cid for cid in set(booked) | set(executed) if booked[cid] != executed[cid])
    store = create_store(store_url)
    try:
        heard = StoreReader(store).venue_events()
    finally:
        store.dispose()
    lines = [f"{len(fills)} fills booked, {len(trades)} trades at the exchange"]
    for cid in differ:
        lines.append(f"order {cid}: {booked[cid]} booked, {executed[cid]} executed")
        lines += [
            f"  trade {tr.id} {tr.order.side} {tr.qty} @ {tr.price} at {tr.time}"
            for tr in trades
            if tr.order.client_order_id == cid
        ]
        lines += [
            f"  booked {f.side.value} {f.qty} @ {f.price} at {f.timestamp}"
            for f in fills
            if f.client_order_id == cid
        ]
        lines += [
            f"  heard at step {step}: {e.kind.value} trade={e.trade_id} qty={e.qty} at {e.at}"
            for step, events in sorted(heard.items())
            for e in events
            if e.client_order_id == cid
        ]
    return "\n".join(lines)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_session_trades_at_the_exchange_and_the_books_agree(
    fake: FakeBinance, tmp_path, parts: int
) -> None:
    """`parts` 3: every order fills in three lots, one per bar (the symbol waits meanwhile)."""
    acct = account(fake)
    fake.set_partial_fills(parts)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store,
        fake.url,
        acct.api_key,
        acct.secret,
        bars(80, flat_tail=6 * parts),  # the last order's lots fill one per bar, on the tail
        price=lambda c: fake.set_price(MARKET, c),
    )
    try:
        run_until_settled(session)
    finally:
        store.dispose()
    seen = check_books_agree(fake, acct, url)
    assert seen["exchange_orders"] >= 6, seen  # the strategy traded for real
    # every order went through intent -> sent -> acknowledged -> filled, in the journal
    store = create_store(url)
    try:
        reader = StoreReader(store)
        cid = next(iter(reader.latest_orders()))
        assert [s for _, s in reader.order_history(cid)][:3] == [
            OrderStatus.NEW,
            OrderStatus.SUBMITTING,
            OrderStatus.SUBMITTED,
        ]
    finally:
        store.dispose()


def test_stops_and_take_profits_are_held_and_sent_when_a_bar_reaches_them(
    fake: FakeBinance, tmp_path
) -> None:
    """Tight exits on a random walk: held by the venue, sent as market orders when a closed bar
    reaches them, their siblings cancelled by the fill; the books still equal the exchange."""
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store,
        fake.url,
        acct.api_key,
        acct.secret,
        bars(80),
        price=lambda c: fake.set_price(MARKET, c),
        settings=EXITS,
    )
    try:
        run_until_settled(session)
    finally:
        store.dispose()
    check_books_agree(fake, acct, url)
    store = create_store(url)
    try:
        orders = StoreReader(store).latest_orders()
        # the market's least tradable quantity and value, stored for rebuilds (docs/live.md)
        assert StoreReader(store).get_state("venue_rules") == {SYMBOL: [0.00001, 5.0]}
    finally:
        store.dispose()
    sent = {o.client_order_id for o in fake.orders(acct)}
    exits = Counter(
        (o.purpose.value, o.client_order_id in sent, o.status.value)
        for o in orders.values()
        if o.purpose in PROTECTIVE_PURPOSES
    )
    assert exits[("stop_loss", True, "filled")] >= 2, exits  # reached, sent, filled
    assert exits[("take_profit", True, "filled")] >= 1, exits
    # each fill cancelled the sibling, which the exchange never saw
    assert exits[("take_profit", False, "cancelled")] >= 2, exits
    # nothing sent is left open
    assert not any(at and status != "filled" for _, at, status in exits), exits


def test_faults_at_the_exchange_never_lose_or_double_an_order(fake: FakeBinance, tmp_path) -> None:
    """Timeouts after accepting, 5xx before, dropped connections both ways, 429s and orders
    invisible for a moment, on a quarter of the order and query calls."""
    acct = account(fake)
    faults = [
        Fault("accept_then_timeout", delay=2.0),
        Fault("error_5xx_before_accept"),
        Fault("error_5xx_after_accept"),
        Fault("drop_before_accept"),
        Fault("drop_after_accept"),
        Fault("rate_limit", retry_after=0),
        Fault("delayed_visibility", hide_for=0.3),
    ]
    fake.randomize_faults(7, 0.25, faults, [("POST", "/api/v3/order")])
    # queries fail too (never the order itself): the broker reads again at the next poll
    query_faults = [Fault("error_5xx_before_accept"), Fault("drop_before_accept")]
    fake.randomize_faults(
        8, 0.2, query_faults, [("GET", "/api/v3/order"), ("GET", "/api/v3/myTrades")]
    )
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store,
        fake.url,
        acct.api_key,
        acct.secret,
        bars(120),
        price=lambda c: fake.set_price(MARKET, c),
        timeout_ms=500,
        grace_s=1.0,
    )
    try:
        run_until_settled(session, timeout_s=120)
        stats = session.broker.stats if session.broker else None
    finally:
        store.dispose()
    seen = check_books_agree(fake, acct, url)
    faulted = [r for r in fake.requests_to("POST", "/api/v3/order") if r.fault]
    assert len(faulted) >= 3, "the run must meet faults"
    assert stats is not None and stats.unknown >= 1, stats
    assert seen["exchange_orders"] >= 5


# Where the engine dies: after the intent is committed, before the call (before_create); while
# the request is at the exchange, its order created, the answer not back (in_flight: the test
# kills it from outside); after the answer, before it is stored (after_create); between two lots
# of a partial fill (after_fill, orders filling in three lots).
CRASH_POINTS = ["before_create", "in_flight", "after_create", "after_fill"]


@pytest.mark.parametrize("point", [*CRASH_POINTS, "stop_sent"])
def test_kill_9_at_each_point_of_an_order_then_a_new_engine_finishes_exactly_once(
    fake: FakeBinance, tmp_path, point: str
) -> None:
    """`stop_sent`: a held stop-loss, reached by a bar, was sent and acknowledged."""
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    worker = [sys.executable, str(HERE / "live_support.py"), url, fake.url, acct.api_key]
    worker += [acct.secret, "--crash-at", point, "--crash-after", "2"]
    if point == "stop_sent":
        worker[-3:] = ["after_create", "--crash-after", "1", "--exits"]
        worker += ["--crash-purpose", "stop_loss"]
    advancing = threading.Event()
    if point == "after_fill":  # three lots per order, one every 50 ms (the market trading on)
        fake.set_partial_fills(3)

        def advance() -> None:
            while not advancing.wait(0.05):
                fake.advance()

        threading.Thread(target=advance, daemon=True).start()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    if point == "in_flight":  # the 2nd order is created, its answer held: kill the engine then
        fake.queue_fault("POST", "/api/v3/order", "accept_then_timeout", delay=60.0)
        process = subprocess.Popen(worker, stdout=subprocess.PIPE, text=True, env=env)
        wait_for(lambda: len(fake.orders(acct)) >= 1, "the held order at the exchange")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert len(fake.orders(acct)) == 1  # created, its answer never read
    else:
        out = subprocess.run(worker, capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == -signal.SIGKILL, out.stdout[-2000:] + out.stderr[-3000:]
        expected = "after_create stop_loss" if point == "stop_sent" else point
        assert f"crash {expected}" in out.stdout
    # a new engine takes over (the dead one's lease is expired by hand: no waiting out its TTL)
    store = create_store(url)
    try:
        _expire_lease(store)
        settings = EXITS if point == "stop_sent" else SETTINGS
        session = live_session(
            store, fake.url, acct.api_key, acct.secret, bars(60), grace_s=0.5, settings=settings
        )
        run_until_settled(session)
    finally:
        advancing.set()
        store.dispose()
    check_books_agree(fake, acct, url)


def test_a_replaced_engine_cannot_send(fake: FakeBinance, tmp_path) -> None:
    """Two engines on one store against one exchange: only the lease holder's orders exist."""
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store_a, store_b = create_store(url), create_store(url)
    a = live_session(store_a, fake.url, acct.api_key, acct.secret, bars(80), holder="a")
    b = live_session(store_b, fake.url, acct.api_key, acct.secret, bars(80), holder="b")
    try:
        a.start()
        deadline = time.monotonic() + 30
        while a.state != "running" and time.monotonic() < deadline:
            time.sleep(0.02)
        b.start()
        time.sleep(0.5)
        assert b.state == "standby"
        run_until_settled(a)
        b.stop()
    finally:
        a.stop()
        b.stop()
        store_a.dispose()
        store_b.dispose()
    check_books_agree(fake, acct, url)


def wait_for(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_position_that_differs_from_the_exchange_pauses_trading_and_says_why(
    fake: FakeBinance, tmp_path
) -> None:
    """Someone else trades the account: the periodic check finds the balance off the books,
    pauses (exits still allowed) and names the numbers; their open order is listed as external."""
    acct = account(fake)
    store = create_store(f"sqlite:///{tmp_path / 'live.db'}")
    session = live_session(
        store, fake.url, acct.api_key, acct.secret, bars(400), reconcile_s=0.1, bars_per_second=50
    )
    other = fake.client(acct)
    try:
        session.start()
        wait_for(lambda: session.reconciliation is not None, "the first reconciliation")
        assert session.reconciliation["ok"], session.reconciliation
        assert session.snapshot["venue"]["kind"] == "live"
        other.create_order(SYMBOL, "market", "buy", 0.5, None, {"clientOrderId": "by-hand-1"})
        other.create_order(SYMBOL, "limit", "buy", 0.1, 50.0, {"clientOrderId": "by-hand-2"})
        wait_for(lambda: session.engine.risk.paused_reason is not None, "the pause")
        reason = session.engine.risk.paused_reason
        assert reason.startswith("reconciliation: BTC/USDT: the exchange holds"), reason
        report = session.reconciliation
        assert not report["ok"] and report["problems"][0] in reason
        [row] = report["positions"]
        # the hand-made buy: 0.5 BTC less its fee, which Binance charges in BTC
        assert row["exchange"] - row["books"] == pytest.approx(0.4995)
        assert [o["client_order_id"] for o in report["external_orders"]] == ["by-hand-2"]
        wait_for(lambda: session.snapshot.get("paused"), "the published pause")
    finally:
        session.stop()
        store.dispose()


def test_the_kill_switch_flattens_at_the_exchange(fake: FakeBinance, tmp_path) -> None:
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store, fake.url, acct.api_key, acct.secret, bars(400), bars_per_second=40
    )
    try:
        session.start()
        wait_for(
            lambda: (
                session.engine.portfolio.holds(SYMBOL)  # a position, not the dust of one
                and not session.engine.venue.working_orders()
            ),
            "a position",
        )
        result = session.submit("kill_switch", {"reason": "desk says stop"}, "tester").result(10)
        assert result["engaged"] and [o["side"] for o in result["flattening_orders"]] == ["sell"]
        wait_for(
            lambda: (
                not session.engine.portfolio.holds(SYMBOL)
                and not session.engine.venue.working_orders()
            ),
            "the flat book",
        )
    finally:
        session.stop()
        store.dispose()
    # flat but for dust: less than the market's step (0.00001 BTC), which no order can sell
    assert sum(server_btc(fake, acct)) < Decimal("0.00001")
    check_books_agree(fake, acct, url)


def test_a_clock_off_by_half_a_minute_is_measured_and_a_later_drift_is_caught_up(
    fake: FakeBinance, tmp_path
) -> None:
    """The exchange's clock 30 s ahead of ours from the start (beyond Binance's 10 s window),
    then 40 s behind in the middle: requests are refused as outside the window until the
    difference is measured again; no order is lost or doubled."""
    acct = account(fake)
    fake.clock_skew_ms = 30_000
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    frames = bars(120)
    steps = {"n": 0}

    def price(close: float) -> None:
        steps["n"] += 1
        if steps["n"] == 60:
            fake.clock_skew_ms = -40_000
        fake.set_price(MARKET, close)

    session = live_session(store, fake.url, acct.api_key, acct.secret, frames, price=price)
    try:
        run_until_settled(session)
        stats = session.broker.stats if session.broker else None
    finally:
        store.dispose()
    assert stats is not None and stats.errors.get("InvalidNonce", 0) >= 1, stats
    seen = check_books_agree(fake, acct, url)
    assert seen["exchange_orders"] >= 6


def test_a_manual_order_goes_to_the_exchange_at_once_not_at_the_next_bar(
    fake: FakeBinance, tmp_path
) -> None:
    """Bars every 5 s: the operator's buy reaches the exchange, and its fill the books, within a
    second of the command."""
    acct = account(fake)
    store = create_store(f"sqlite:///{tmp_path / 'live.db'}")
    frames = bars(12, flat_tail=0)
    session = live_session(store, fake.url, acct.api_key, acct.secret, frames, bars_per_second=0.2)
    try:
        session.start()
        wait_for(lambda: session.steps_done >= 1, "the first bar")
        step = session.steps_done
        asked = time.monotonic()
        order = {"symbol": SYMBOL, "side": "buy", "qty": 2.0}
        result = session.submit("order", order, "desk").result(10)
        assert [o["status"] for o in result["orders"]] == ["submitting"], result
        wait_for(lambda: len(fake.orders(acct)) == 1, "the order at the exchange", 2.0)
        wait_for(
            # 2 BTC bought, 0.002 of them the fee (charged in BTC)
            lambda: session.engine.portfolio.position(SYMBOL).qty == pytest.approx(1.998),
            "the fill in the books",
            2,
        )
        assert time.monotonic() - asked < 2.5 and session.steps_done == step  # no bar since
    finally:
        session.stop()
        store.dispose()


def slow_session(fake: FakeBinance, acct: Any, store: Any) -> Any:
    """A session with bars every 10 s, at an exchange filling each order in three lots."""
    fake.set_partial_fills(3)
    return live_session(
        store, fake.url, acct.api_key, acct.secret, bars(8, flat_tail=0), bars_per_second=0.1
    )


def buy_three_in_lots(session: Any, fake: FakeBinance, acct: Any) -> str:
    """Start `session`; the operator buys 3 BTC; returns the order's id once its first lot
    (1 BTC, less its fee of 0.001 BTC) is in the books."""
    session.start()
    wait_for(lambda: session.steps_done >= 1, "the first bar")
    placed = session.submit("order", {"symbol": SYMBOL, "side": "buy", "qty": 3.0}, "desk")
    cid = placed.result(10)["orders"][0]["client_order_id"]
    wait_for(lambda: len(fake.orders(acct)) == 1, "the order at the exchange")
    position = session.engine.portfolio.position
    wait_for(lambda: position(SYMBOL).qty == pytest.approx(0.999), "the first lot")
    return cid


def test_cancelling_a_partly_filled_order_keeps_the_fill_that_raced_the_cancel(
    fake: FakeBinance, tmp_path
) -> None:
    """An operator's buy fills in three lots; after the first, the operator cancels it, and a
    second lot fills at the exchange just before the cancel lands. The order ends cancelled with
    both lots booked, and the books equal the exchange."""
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = slow_session(fake, acct, store)
    try:
        cid = buy_three_in_lots(session, fake, acct)
        position = session.engine.portfolio.position
        fake.queue_fault("DELETE", "/api/v3/order", "fill_before_cancel")
        session.submit("cancel", {"client_order_id": cid}, "desk").result(10)
        wait_for(lambda: not session.engine.venue.working_orders(), "the cancel booked")
        [booked] = [o for o in session.engine.journal.latest_orders().values()]
        assert booked.status is OrderStatus.CANCELLED and booked.filled_qty == 2.0
        assert position(SYMBOL).qty == pytest.approx(1.998)  # the two lots, less their fees
    finally:
        session.stop()
        store.dispose()
    [at_exchange] = fake.orders(acct)
    assert at_exchange.executed == 2
    check_books_agree(fake, acct, url)


def test_a_failed_read_after_a_cancel_is_read_again_by_the_next_poll(
    fake: FakeBinance, tmp_path
) -> None:
    """The read that follows a cancel meets a 5xx: the session carries on, and the next poll
    books the cancel and the lot filled before it."""
    acct = account(fake)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = slow_session(fake, acct, store)
    try:
        cid = buy_three_in_lots(session, fake, acct)
        fake.queue_fault("GET", "/api/v3/order", "error_5xx_before_accept")
        session.submit("cancel", {"client_order_id": cid}, "desk").result(10)
        wait_for(lambda: not session.engine.venue.working_orders(), "the cancel booked")
        assert session.alive, session.failure
        [booked] = [o for o in session.engine.journal.latest_orders().values()]
        assert booked.status is OrderStatus.CANCELLED and booked.filled_qty == 1.0
        assert session.broker is not None and session.broker.stats.errors["ExchangeNotAvailable"]
    finally:
        session.stop()
        store.dispose()
    check_books_agree(fake, acct, url)


def test_a_failed_start_up_check_is_retried_and_no_bar_is_traded_before_it_passes(
    fake: FakeBinance, tmp_path
) -> None:
    acct = account(fake)
    fake.queue_fault("GET", "/api/v3/account", "error_5xx_before_accept", times=2)
    url = f"sqlite:///{tmp_path / 'live.db'}"
    store = create_store(url)
    session = live_session(
        store,
        fake.url,
        acct.api_key,
        acct.secret,
        bars(60),
        price=lambda c: fake.set_price(MARKET, c),
    )
    try:
        run_until_settled(session)
    finally:
        store.dispose()
    checks = fake.requests_to("GET", "/api/v3/account")
    assert [r.status for r in checks][:3] == [503, 503, 200], [r.status for r in checks]
    orders = fake.orders(acct)
    assert orders and all(o.time >= int(checks[2].params["timestamp"]) - 5_000 for o in orders)
    check_books_agree(fake, acct, url)


def server_btc(server: FakeBinance, acct: Any) -> tuple[Decimal, Decimal]:
    return server.balance(acct, "BTC")


def _expire_lease(store: Any) -> None:
    """The killed engine's lease, expired now (as if its TTL had run out)."""
    import pandas as pd
    from sqlalchemy import update

    from n1v1.store import schema as t

    with store.transaction() as conn:
        conn.execute(update(t.lease).values(expires_at=pd.Timestamp("2000-01-01", tz="UTC")))
