"""What a trading run leaves in its store, and how a faulted run's journal is held against an
uninterrupted run of the same feed (the engine is deterministic, so they must be equal).

Shared by the end-to-end tests (test_serve_upgrade, test_store_outage, test_faults) and the fault
harness (bench/faults.py, which puts this folder on its path).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select

from n1v1.store import Store, StoreReader
from n1v1.store import schema as t


def outcome(store: Store) -> dict[str, Any]:
    """Everything a run leaves in the store that a second, identical run must reproduce."""
    reader = StoreReader(store)
    orders = reader.latest_orders()
    with store.engine.connect() as conn:
        bars = [
            (r.step, r.symbol, r.timestamp, r.open, r.high, r.low, r.close, r.volume)
            for r in conn.execute(select(t.bars).order_by(t.bars.c.id))
        ]
    return {
        "bars": bars,
        "orders": {
            cid: (o.symbol, o.side, o.qty, o.status, o.filled_qty, o.avg_fill_price, o.created_at)
            for cid, o in orders.items()
        },
        "histories": {cid: reader.order_history(cid) for cid in orders},
        "fills": reader.fills(),
        "signals": reader.signals(),
        "risk_decisions": reader.risk_decisions(),
        "equity": reader.equity(),
        "positions": reader.positions(),
        "commands": [(c["step"], c["kind"], c["payload"]) for c in reader.commands()],
        # parent orders as last written (when is the store's clock, not the run's)
        "algo_orders": [{**p, "updated_at": None} for p in reader.algo_orders()],
    }


def invariant_problems(served: dict[str, Any], expected: dict[str, Any], steps: int) -> list[str]:
    """Why the faulted run's journal (`served`) is not the uninterrupted run's (`expected`) over
    a feed of `steps` steps: a step missing or logged twice, a fill recorded twice, or any part of
    the journal (orders and their histories, fills, signals, risk decisions, equity, positions,
    commands) that differs. Empty when the invariant holds."""
    problems = []
    logged = [row[0] for row in served["bars"]]
    fills = Counter((f.client_order_id, f.seq) for f in served["fills"])
    if sorted(set(logged)) != list(range(steps)) or logged != sorted(logged):
        problems.append(f"bar log: not steps 0..{steps - 1} each once in order")
    twice = [key for key, n in fills.items() if n > 1]
    if twice:
        problems.append(f"fills recorded more than once: {twice[:3]}")
    if len({p.timestamp for p in served["equity"]}) != len(served["equity"]):
        problems.append("more than one equity point for a step")
    for key in expected:
        if served[key] != expected[key]:
            extra = sorted(set(map(str, served[key])) - set(map(str, expected[key])))[:2]
            missing = sorted(set(map(str, expected[key])) - set(map(str, served[key])))[:2]
            problems.append(f"{key} differ (extra e.g. {extra}, missing e.g. {missing})")
    return problems


def journal_prefix(run: dict[str, Any], steps: int, last: Any) -> dict[str, Any]:
    """The part of an `outcome` written by its first `steps` steps, whose last bar is at `last`:
    every journal row is stamped with its step's bar time, so a run still trading can be held
    against the first steps of a finished one. The orders' latest states, the positions and the
    parent orders are current values, not history: the histories of the orders (the parents'
    children among them) and the equity curve stand for them here."""
    return {
        "bars": [row for row in run["bars"] if row[0] < steps],
        "histories": {
            cid: kept
            for cid, events in run["histories"].items()
            if (kept := [(at, status) for at, status in events if at <= last])
        },
        "fills": [f for f in run["fills"] if f.timestamp <= last],
        "signals": [s for s in run["signals"] if s.timestamp <= last],
        "risk_decisions": [d for d in run["risk_decisions"] if d.timestamp <= last],
        "equity": [p for p in run["equity"] if p.timestamp <= last],
        "commands": [c for c in run["commands"] if c[0] < steps],
    }
