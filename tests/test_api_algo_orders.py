"""Parent orders over HTTP: POST, GET (list and one), DELETE /api/v1/algo-orders, against a real
TradingSession held at an exact step (tests/test_api.py's set-up): what is accepted, how it
works bar by bar, what it cost, and what is refused, naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from session_worker import run_to
from test_api import READ, Client, Live, _error, running_session, served

from n1v1.store import StoreReader

TWAP = {
    "symbol": "LTC/USD",
    "side": "buy",
    "qty": 6.0,
    "algo": "twap",
    "duration": "30min",
    "interval": "5min",
}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    with running_session(tmp_path) as held:
        yield held


@pytest.fixture
def api(live: Live) -> Iterator[Client]:
    with served(live) as client:
        yield client


def test_a_twap_is_201_works_to_done_and_its_shortfall_is_what_its_fills_say(
    api: Client, live: Live
) -> None:
    response = api.call("POST", "/api/v1/algo-orders", json=TWAP)
    assert response.status_code == 201, response.text
    parent = response.json()
    assert (parent["status"], parent["qty"], parent["slots"], len(parent["children"])) == (
        "working",
        "6",
        6,
        1,  # the first slot is due at the bar it was accepted on
    )
    arrival = parent["arrival_price"]
    assert arrival == live.session.last_bars["LTC/USD"].close
    run_to(live.session, live.feed, 62)  # 30 one-minute bars and two: six slots, their fills

    one = api.call("GET", f"/api/v1/algo-orders/{parent['parent_id']}")
    assert one.status_code == 200
    done = one.json()
    assert (done["status"], done["filled"], done["progress"]) == ("done", "6", 1.0)
    children = done["child_orders"]
    assert [c["client_order_id"] for c in children] == done["children"]
    assert [(c["qty"], c["status"], c["purpose"]) for c in children] == [
        (1.0, "filled", "manual")
    ] * 6
    # the shortfall from the stored fills, independently: side x (P - A) / A + fees / V
    fills = [f for f in StoreReader(live.store).fills() if f.client_order_id in done["children"]]
    assert len(fills) == 6
    value = sum(f.qty * f.price for f in fills)
    average = value / 6.0
    paper = 6.0 * arrival
    shortfall = done["shortfall"]
    assert done["average_price"] == pytest.approx(average)
    assert shortfall["execution_bps"] == pytest.approx((value - 6.0 * arrival) / paper * 1e4)
    assert shortfall["fees_bps"] == pytest.approx(sum(f.fee for f in fills) / paper * 1e4)
    assert shortfall["opportunity_bps"] == 0.0
    assert shortfall["total_bps"] == pytest.approx(
        shortfall["execution_bps"] + shortfall["fees_bps"]
    )
    assert shortfall["vs_vwap_bps"] is not None and shortfall["interval_vwap"] > 0

    listed = api.call("GET", "/api/v1/algo-orders", params={"status": "done"}).json()
    assert listed["total"] == 1 and listed["algo_orders"][0]["parent_id"] == parent["parent_id"]
    assert api.call("GET", "/api/v1/algo-orders", params={"status": "working"}).json()["total"] == 0
    # the status carries the parent too, for the dashboard
    (shown,) = live.session.snapshot["algo_orders"]
    assert shown["status"] == "done"


def test_delete_cancels_the_parent_and_its_working_child_then_conflicts(
    api: Client, live: Live
) -> None:
    parent = api.call("POST", "/api/v1/algo-orders", json=TWAP).json()
    pid = parent["parent_id"]
    (child,) = parent["children"]
    response = api.call("DELETE", f"/api/v1/algo-orders/{pid}")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["reason"]) == (
        "cancelled",
        "cancelled by operator",
    )
    (order,) = api.call("GET", f"/api/v1/algo-orders/{pid}").json()["child_orders"]
    assert (order["client_order_id"], order["status"]) == (child, "cancelled")
    run_to(live.session, live.feed, 62)
    assert len(api.call("GET", f"/api/v1/algo-orders/{pid}").json()["children"]) == 1
    again = api.call("DELETE", f"/api/v1/algo-orders/{pid}")
    assert again.status_code == 409 and _error(again)["code"] == "conflict"
    missing = api.call("DELETE", "/api/v1/algo-orders/pa-none")
    assert missing.status_code == 404 and _error(missing)["code"] == "not_found"
    assert api.call("GET", "/api/v1/algo-orders/pa-none").status_code == 404


def test_a_vwap_takes_its_weights_from_the_profile_before_now_and_logs_them(
    api: Client, live: Live
) -> None:
    body = {**TWAP, "algo": "vwap", "profile": "coinbase_BTC-USD_1m"}
    response = api.call("POST", "/api/v1/algo-orders", json=body)
    assert response.status_code == 201, response.text
    (command,) = [c for c in StoreReader(live.store).commands() if c["kind"] == "algo_order"]
    weights = command["payload"]["weights"]
    assert len(weights) == 6 and all(w >= 0 for w in weights) and sum(weights) > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"qty": 0}, "body.qty"),
        ({"qty": -1}, "body.qty"),
        ({"qty": "lots"}, "body.qty"),
        ({"duration": "soon"}, "body.duration"),
        ({"interval": "0min"}, "interval"),
        ({"interval": "2h"}, "duration"),
        ({"limit_price": 0}, "body.limit_price"),
        ({"max_participation": 1.5}, "body.max_participation"),
        ({"algo": "pov"}, "body.algo"),
        ({"symbol": "DOGE/USD"}, "symbol"),
        ({"qty": 1e-9}, "qty"),
        ({"algo": "vwap"}, "profile"),
        ({"algo": "vwap", "profile": "no_such_dataset"}, "profile"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_a_bad_parent_is_a_422_naming_the_field_and_nothing_is_kept(
    api: Client, live: Live, change: dict[str, Any], field: str
) -> None:
    response = api.call("POST", "/api/v1/algo-orders", json={**TWAP, **change})
    assert response.status_code == 422, response.text
    error = _error(response)
    named = [f["field"] for f in error["details"].get("fields", [])] or [error["details"]["field"]]
    assert named == [field], error
    assert live.session.snapshot["algo_orders"] == []
    assert StoreReader(live.store).algo_orders() == []


def test_the_read_only_token_reads_parents_but_cannot_place_or_cancel_one(api: Client) -> None:
    assert api.call("POST", "/api/v1/algo-orders", json=TWAP, token=READ).status_code == 403
    assert api.call("POST", "/api/v1/algo-orders", json=TWAP, token=None).status_code == 401
    assert api.call("GET", "/api/v1/algo-orders", token=READ).status_code == 200
    assert api.call("DELETE", "/api/v1/algo-orders/x", token=READ).status_code == 403


def test_a_parent_is_stored_exactly(api: Client, live: Live) -> None:
    parent = api.call("POST", "/api/v1/algo-orders", json={**TWAP, "qty": 0.3}).json()
    (row,) = StoreReader(live.store).algo_orders()
    assert row["parent_id"] == parent["parent_id"] and row["qty"] == "0.3"
    slices = [Decimal(v) for v in row["document"]["in_flight"].values()]
    assert slices == [Decimal("0.05")]  # 0.3 over six slots, exactly
