"""The `algo_order` command: an operator's parent order (TWAP, VWAP), as the API and the journal
carry it, and a parent as readers see it.

A VWAP's slot weights are computed once, when the command is accepted, from the volume profile
of the bundled dataset it names, cut before the session's last bar (no lookahead), and logged
in the command's payload: a rebuild replays the same weights whatever the data says later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd

from n1v1.domain import OrderPurpose, Side
from n1v1.engine.algo_orders import ALGOS, AlgoRequest
from n1v1.execution.algo_plan import (
    PlanError,
    as_decimal,
    parse_span,
    profile_weights,
    slot_times,
)
from n1v1.execution.algos import ParentOrder, parent_to_dict
from n1v1.execution.profiles import dataset_profile, profile_bucket

FIELDS = frozenset(
    {
        "symbol",
        "side",
        "qty",
        "algo",
        "duration",
        "interval",
        "limit_price",
        "max_participation",
        "profile",
        "weights",
    }
)


class AlgoFieldError(PlanError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def algo_request(payload: Mapping[str, Any]) -> AlgoRequest:
    """The request in a payload (AlgoFieldError naming the field). The weights of a VWAP must be
    in it already (`with_vwap_weights`)."""
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise AlgoFieldError(unknown[0], f"{unknown[0]}: unknown field (fields: {sorted(FIELDS)})")
    algo = payload.get("algo", "twap")
    if algo not in ALGOS:
        raise AlgoFieldError("algo", f"algo: one of {', '.join(ALGOS)}, got {algo!r}")
    side = payload.get("side")
    if side not in ("buy", "sell"):
        raise AlgoFieldError("side", f"side: 'buy' or 'sell', got {side!r}")
    qty = payload.get("qty")
    if isinstance(qty, bool) or not isinstance(qty, int | float | str):
        raise AlgoFieldError("qty", f"qty: must be a number, got {qty!r}")
    _field("qty", lambda: as_decimal("qty", qty if not isinstance(qty, int) else str(qty)))
    duration = _field("duration", lambda: parse_span("duration", payload.get("duration")))
    interval = _field("interval", lambda: parse_span("interval", payload.get("interval")))
    limit = _optional_positive(payload, "limit_price")
    rate = _optional_positive(payload, "max_participation")
    if rate is not None and rate > 1:
        raise AlgoFieldError("max_participation", f"max_participation: at most 1, got {rate!r}")
    weights = payload.get("weights")
    if algo == "vwap" and weights is None:
        raise AlgoFieldError("profile", "profile: a vwap needs a dataset to learn its profile")
    return AlgoRequest(
        symbol=str(payload["symbol"]),
        side=Side(side),
        qty=qty if isinstance(qty, str) else repr(float(qty)),
        duration=duration,
        interval=interval,
        algo=algo,
        limit_price=limit,
        max_participation=rate,
        weights=None if weights is None else tuple(float(w) for w in weights),
        purpose=OrderPurpose.MANUAL,
    )


def with_vwap_weights(payload: dict[str, Any], start: pd.Timestamp) -> None:
    """Put a VWAP's slot weights into `payload` (from its `profile` dataset's bars before
    `start`, where its slots begin)."""
    if payload.get("algo") != "vwap" or payload.get("weights") is not None:
        return
    name = payload.get("profile")
    if not isinstance(name, str) or not name:
        raise AlgoFieldError(
            "profile", "profile: a vwap needs a bundled dataset name to learn its volume profile"
        )
    duration = _field("duration", lambda: parse_span("duration", payload.get("duration")))
    interval = _field("interval", lambda: parse_span("interval", payload.get("interval")))
    try:
        profile = dataset_profile(name, start, profile_bucket(interval))
    except PlanError as exc:
        raise AlgoFieldError("profile", str(exc)) from None
    except Exception as exc:  # DataError: an unknown dataset, said with the known ones
        raise AlgoFieldError("profile", f"profile: {exc}") from None
    slots = _field("duration", lambda: slot_times(start, duration, interval))
    payload["weights"] = profile_weights(profile, slots)


def parent_dict(parent: ParentOrder) -> dict[str, Any]:
    """A parent as the API shows it: its plan and progress, children, average price and the
    implementation shortfall so far (the unfilled part marked at the end price, or at arrival
    while working)."""
    stored = parent_to_dict(parent)
    shortfall = parent.shortfall()
    return {
        "parent_id": parent.parent_id,
        "algo": parent.algo,
        "symbol": parent.symbol,
        "side": parent.side.value,
        "qty": _plain(parent.qty),
        "filled": _plain(parent.filled),
        "open_qty": _plain(max(parent.open_qty, Decimal(0))),
        "progress": float(parent.filled / parent.qty),
        "status": parent.status.value,
        "reason": parent.reason,
        "purpose": parent.purpose,
        "strategy": parent.strategy,
        "created_at": stored["created_at"],
        "start": stored["slots"][0],
        "end": (parent.slots[-1] + (parent.slots[1] - parent.slots[0])).isoformat()
        if len(parent.slots) > 1
        else stored["slots"][0],
        "slots": len(parent.slots),
        "next_slot": parent.next_slot,
        "limit_price": parent.limit_price,
        "max_participation": parent.max_participation,
        "arrival_price": parent.arrival_price,
        "average_price": parent.average_price,
        "end_price": parent.end_price,
        "children": list(parent.children),
        "in_flight": {k: _plain(v) for k, v in parent.in_flight.items() if v > 0},
        "shortfall": {
            "executed": shortfall.executed,
            "execution_bps": shortfall.execution_bps,
            "fees_bps": shortfall.fees_bps,
            "opportunity_bps": shortfall.opportunity_bps,
            "total_bps": shortfall.total_bps,
            "interval_vwap": parent.interval_vwap,
            "vs_vwap_bps": shortfall.vs_vwap_bps,
            "single_order_bps": parent.single_order_bps,
        },
    }


def _plain(quantity: Decimal) -> str:
    """An exact quantity without trailing zeros or an exponent: 6, 0.05, 12.5."""
    text = format(quantity.normalize(), "f")
    return text if text != "-0" else "0"


def _field(name: str, make: Any) -> Any:
    try:
        return make()
    except PlanError as exc:
        raise AlgoFieldError(name, str(exc)) from None


def _optional_positive(payload: Mapping[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AlgoFieldError(name, f"{name}: must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise AlgoFieldError(name, f"{name}: must be finite and > 0, got {value!r}")
    return float(value)
