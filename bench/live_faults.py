"""A long live session against a faulty exchange: at least 1,000 orders with a fifth of the calls
faulted, then the books against the exchange.

    python bench/live_faults.py [--orders 1000] [--fault-rate 0.2] [--seed 7] [--partial 2]
                                [--no-exits]

The real session, live venue, broker and ccxt client trade a seeded random walk (sma_cross 2/5,
which turns often) at the fake Binance of the tests (tests/fake_binance: Binance's REST API,
signing and error codes), which faults `--fault-rate` of the order entries (accepted then timed
out, 5xx before and after accepting, connections dropped before and after, 429s, orders invisible
for a while) and of the order and trade queries, and fills every order in `--partial` lots.
The exchange charges fees as Binance does (a buy's in BTC), and the session holds a 0.3 %
stop-loss and a 0.4 % take-profit on every position (unless `--no-exits`), sent when a bar
reaches them.
The feed goes on until `--orders` orders have reached the exchange. Then, from the store and from
the exchange itself: exactly one exchange order per intent, the journal's fills equal the
exchange's trades (count, quantity, value), the stored position equals the BTC balance and the
engine's cash the USDT balance. Prints the figures and PASS/FAIL (exit 1 on FAIL).
"""

from __future__ import annotations

import argparse
import collections
import math
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from fake_binance.faults import Fault  # noqa: E402
from live_support import (  # noqa: E402
    CASH,
    EXITS,
    MARKET,
    SETTINGS,
    SYMBOL,
    bars,
    exchange,
    live_session,
    received_qty,
)

from n1v1.domain import PROTECTIVE_PURPOSES  # noqa: E402
from n1v1.store import create_store  # noqa: E402
from n1v1.store.journal import StoreReader  # noqa: E402

ORDER_FAULTS = [
    Fault("accept_then_timeout", delay=2.0),
    Fault("error_5xx_before_accept"),
    Fault("error_5xx_after_accept"),
    Fault("drop_before_accept"),
    Fault("drop_after_accept"),
    Fault("rate_limit", retry_after=0),
    Fault("delayed_visibility", hide_for=0.5),
]
QUERY_FAULTS = [Fault("error_5xx_before_accept"), Fault("drop_before_accept")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--partial", type=int, default=2, help="lots each order fills in")
    ap.add_argument(
        "--bars-per-second",
        type=float,
        default=50.0,
        help="the feed's pace: time for answers between bars, as a live feed gives",
    )
    ap.add_argument("--no-exits", action="store_true", help="no stop-loss or take-profit")
    a = ap.parse_args()
    from api import machine_info  # bench/api.py

    print(f"# a live session against a faulty exchange ({time.strftime('%Y-%m-%d %H:%M')} UTC)")
    print(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    fake = exchange()
    acct = fake.add_account("desk", {"USDT": CASH, "BTC": 0})
    fake.set_partial_fills(a.partial)
    fake.randomize_faults(a.seed, a.fault_rate, ORDER_FAULTS, [("POST", "/api/v3/order")])
    fake.randomize_faults(
        a.seed + 1,
        a.fault_rate,
        QUERY_FAULTS,
        [("GET", "/api/v3/order"), ("GET", "/api/v3/myTrades")],
    )
    n_bars = a.orders * 20  # more than enough: the run stops once --orders have settled
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'live.db'}"
        store = create_store(url)
        session = live_session(
            store,
            fake.url,
            acct.api_key,
            acct.secret,
            bars(n_bars, seed=a.seed, flat_tail=50),
            price=lambda c: fake.set_price(MARKET, c),
            timeout_ms=500,
            grace_s=1.0,
            bars_per_second=a.bars_per_second,
            settings=SETTINGS if a.no_exits else EXITS,
        )
        started = time.monotonic()
        last_report = started
        session.start()
        try:
            while True:
                if time.monotonic() - last_report >= 15:
                    last_report = time.monotonic()
                    venue = session.engine.venue
                    print(
                        f"[{last_report - started:4.0f} s] step {session.steps_done:,}, exchange "
                        f"orders {len(fake.orders(acct)):,}, working "
                        f"{[(o.status.value, o.filled_qty) for o in venue.in_flight()]}, "
                        f"answers waiting {venue.waiting()}, halt {session.engine.risk.halt}, "
                        f"position {session.engine.portfolio.position(SYMBOL).qty:.5f}, cash "
                        f"{session.engine.portfolio.cash:,.2f}",
                        flush=True,
                    )
                if not session.alive:
                    print(f"FAIL: the session died: {session.failure}")
                    return 1
                sent = len(fake.orders(acct))
                venue = session.engine.venue
                settled = not venue.in_flight() and not venue.waiting()
                if settled and (sent >= a.orders or session.state == "replay_finished"):
                    break  # enough orders, every one settled in the books
                time.sleep(0.2)
            stats = session.broker.stats if session.broker else None
        finally:
            session.stop()
            store.dispose()
        wall = time.monotonic() - started
        store = create_store(url)
        reader = StoreReader(store)
        orders, fills = reader.latest_orders(), reader.fills()
        position = {p["symbol"]: p["qty"] for p in reader.positions()}.get(SYMBOL, 0.0)
        store.dispose()
    at_exchange = fake.orders(acct)
    trades = fake.trades(acct)
    per_id = collections.Counter(o.client_order_id for o in at_exchange)
    faults = collections.Counter(r.fault for r in fake.requests if r.fault)
    calls = collections.Counter((r.method, r.path) for r in fake.requests)
    btc = sum(fake.balance(acct, "BTC"))
    usdt = sum(fake.balance(acct, "USDT"))
    paid = sum(f.price * f.qty * (1 if f.side.value == "buy" else -1) + f.fee for f in fills)
    # what the account received: a buy's fee in BTC is BTC it never got
    received = received_qty(trades)
    in_btc = sum(1 for t in trades if t.commission_asset == "BTC")
    sent_ids = {o.client_order_id for o in at_exchange}
    exits = collections.Counter(
        o.purpose.value
        for o in orders.values()
        if o.purpose in PROTECTIVE_PURPOSES and o.client_order_id in sent_ids
    )
    fake.close()

    duplicates = sum(n - 1 for n in per_id.values() if n > 1)
    unknown_to_us = set(per_id) - set(orders)
    statuses = collections.Counter(o.status.value for o in orders.values())
    checks = {
        f"at least {a.orders} orders reached the exchange": len(at_exchange) >= a.orders,
        "no intent placed twice (duplicates)": duplicates == 0,
        "no exchange order unknown to the journal": not unknown_to_us,
        "journal fills == exchange trades (count)": len(fills) == len(trades),
        "journal fills == exchange trades (quantity received)": math.isclose(
            sum(f.qty for f in fills), float(received), abs_tol=1e-9
        ),
        "stored position == BTC balance": Decimal(str(position)).quantize(Decimal("1e-8")) == btc,
        "engine cash == USDT balance": math.isclose(CASH - paid, float(usdt), abs_tol=1e-6),
    }
    print(
        f"\n{session.steps_done:,} bars in {wall:.0f} s; orders decided {len(orders):,} "
        f"({dict(statuses)}); at the exchange {len(at_exchange):,}; fills {len(fills):,} "
        f"(exchange trades {len(trades):,}); partial lots per order {a.partial}"
    )
    refusals = collections.Counter(
        (o.purpose.value, o.side.value, o.reason.split(":")[0][:40])
        for o in orders.values()
        if o.status.value == "rejected"
    )
    print(f"refused (purpose, side, why): {dict(refusals.most_common())}")
    print(
        f"stops and take-profits reached and sent: {dict(exits)}; trades whose fee was charged in "
        f"BTC: {in_btc:,}"
    )
    print(f"calls to the exchange: {dict(calls)}")
    injected = sum(faults.values())
    print(f"faults injected: {injected:,} ({dict(faults)})")
    print(f"broker: {stats}")
    print(
        f"final: position {position:.8f} BTC vs balance {btc} BTC; cash {CASH - paid:,.8f} vs "
        f"{usdt} USDT"
    )
    print("\n| check | result |\n|---|---|")
    for name, ok in checks.items():
        print(f"| {name} | {'yes' if ok else 'NO'} |")
    ok = all(checks.values())
    print(f"\n{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
