"""Client order ids an exchange accepts, derived from the engine's own ids.

Why this matters: after a timeout the only way to learn whether an order exists is to ask the
exchange for it *by the client id we sent*. That works only if the exchange stored the id exactly
as sent. An id it rejects loses the order outright; an id it (or ccxt) silently rewrites or drops
makes the order impossible to find and invites a duplicate. So every id sent is one the exchange's
documented rule accepts, and the same engine id always maps to the same exchange id (the live
venue can recompute it after a restart instead of having to remember it).

The engine's ids (`n1v1.domain.make_client_order_id`: "n1" + 30 lowercase hex, 32 characters) pass
unchanged where the exchange allows them (Binance, OKX, Bybit). Elsewhere a valid id is derived:

- ``token`` exchanges (a character set and a maximum length): "n1" + 30 hex characters of
  SHA-256("n1v1-client-id|" + id). 32 characters of [0-9a-z] fit every token rule below.
- ``uuid`` exchanges (Kraken, Coinbase): the name-based UUID ``uuid5(N1V1_ID_NAMESPACE, id)`` in its
  canonical 8-4-4-4-12 form. uuid5 (RFC 9562, SHA-1 based, 122 hash bits) is *the* standard way to
  turn a name into a UUID deterministically; a SHA-256 "UUIDv8" would be as good in principle but
  some UUID validators accept only versions 1-5.

Derivation is idempotent: a derived id is valid, so deriving again returns it unchanged.

An exchange id without a rule here is refused. No permissive default is safe: the rules differ in
ways that matter (OKX takes no "-" or "_", Kraken's free text stops at 18 characters, Coinbase
Exchange demands a UUID), and guessing wrong is exactly the rewritten-or-rejected id above.

Each rule cites the exchange's documentation; each `param` names the key ccxt 4.5.90's
``create_order`` reads for that exchange (tests/test_client_ids.py checks, through the real ccxt
client against a local HTTP server, that the id arrives on the wire under the exchange's field).
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

# Fixed namespace for uuid5; changing it would change every derived UUID (and so orphan the open
# orders of a running session), so it is a constant, not a setting.
N1V1_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "client-order-id.n1v1")
_TOKEN_DOMAIN = "n1v1-client-id|"
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_SHORT_UUID_RE = re.compile(r"[0-9a-fA-F]{32}")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")


@dataclass(frozen=True, slots=True)
class ClientIdRule:
    """One exchange's client-order-id rule, and the ccxt ``create_order`` param that carries it."""

    param: str  # the key of create_order's params that ccxt turns into the exchange's field
    field: str  # the exchange's own field name, for messages
    form: Literal["token", "uuid"]  # what a derived id looks like
    summary: str  # the rule in words, quoted in errors
    broken: Callable[[str], str | None]  # None when the id is valid, else what is wrong with it


def _token(charset: frozenset[str], chars: str, max_len: int) -> Callable[[str], str | None]:
    def broken(cid: str) -> str | None:
        if not cid:
            return "it is empty"
        if len(cid) > max_len:
            return f"it is {len(cid)} characters long, more than {max_len}"
        for pos, ch in enumerate(cid):
            if ch not in charset:
                return f"character {ch!r} at position {pos} is not one of {chars}"
        return None

    return broken


def _uuid_only(cid: str) -> str | None:
    return None if _UUID_RE.fullmatch(cid) else "it is not one"


def _kraken(cid: str) -> str | None:
    # Kraken reads the id by its length: 36 characters must be a UUID, 32 a dashless UUID, and up
    # to 18 characters are free ASCII text; it stores all three as one 128-bit integer.
    if _UUID_RE.fullmatch(cid) or _SHORT_UUID_RE.fullmatch(cid):
        return None
    if not cid:
        return "it is empty"
    if len(cid) > 18:
        return f"it is {len(cid)} characters long and not a UUID; free text may have at most 18"
    for pos, ch in enumerate(cid):
        if not ("!" <= ch <= "~"):
            return f"character {ch!r} at position {pos} is not printable ASCII"
    return None


_BINANCE = ClientIdRule(
    # Binance spot: `^[a-zA-Z0-9-_]{1,36}$`, the legal range its -1100 error quotes
    # (binance/binance-spot-api-docs#34, answered by Binance; "." is refused). USD-M futures
    # document the wider `^[\.A-Z\:/a-z0-9_-]{1,36}$` (https://developers.binance.com/docs/
    # derivatives/usds-margined-futures/trade/rest-api/New-Order); the
    # spot rule is the subset valid on both. ccxt binance.create_order_request reads
    # `clientOrderId` (or `newClientOrderId`) and sends it as newClientOrderId (spot, futures) or
    # clientOrderId (options).
    param="clientOrderId",
    field="newClientOrderId",
    form="token",
    summary="1-36 characters of A-Z a-z 0-9 - _",
    broken=_token(_ALNUM | {"-", "_"}, "A-Z a-z 0-9 - _", 36),
)
_OKX = ClientIdRule(
    # "A combination of case-sensitive alphanumerics, all numbers, or all letters of up to 32
    # characters." (https://www.okx.com/docs-v5/en/#order-book-trading-trade-post-place-order).
    # ccxt okx.create_order_request reads `clOrdId` or `clientOrderId` into clOrdId.
    param="clientOrderId",
    field="clOrdId",
    form="token",
    summary="1-32 characters of A-Z a-z 0-9",
    broken=_token(_ALNUM, "A-Z a-z 0-9", 32),
)
_BYBIT = ClientIdRule(
    # "User customised order ID. A max of 36 characters. Combinations of numbers, letters (upper
    # and lower cases), dashes, and underscores are supported."
    # (https://bybit-exchange.github.io/docs/v5/order/create-order). ccxt
    # bybit.create_order_request reads `clientOrderId` into orderLinkId.
    param="clientOrderId",
    field="orderLinkId",
    form="token",
    summary="1-36 characters of A-Z a-z 0-9 - _",
    broken=_token(_ALNUM | {"-", "_"}, "A-Z a-z 0-9 - _", 36),
)
_KRAKEN = ClientIdRule(
    # cl_ord_id: "Long UUID ... 32 hex characters separated with 4 dashes; Short UUID ... 32 hex
    # characters with no dashes; Free text ... free format ascii text up to 18 characters"
    # (https://docs.kraken.com/api/docs/guides/spot-clordid, and the cl_ord_id field of
    # https://docs.kraken.com/api-reference/trading/add-order). ccxt kraken.order_request reads
    # `clientOrderId` into cl_ord_id.
    param="clientOrderId",
    field="cl_ord_id",
    form="uuid",
    summary="a UUID (with or without dashes) or printable ASCII text of at most 18 characters",
    broken=_kraken,
)
_COINBASE = ClientIdRule(
    # Advanced Trade: client_order_id, "A unique ID provided by the client ... If the ID provided
    # is not unique, the order fails to be created and the order corresponding to that ID is
    # returned." (https://docs.cdp.coinbase.com/api-reference/advanced-trade-api/rest-api/orders/
    # create-order). No format is documented, so N1V1 sends what is valid under every reading: a
    # UUID (what Coinbase's own examples use, and what Coinbase Exchange requires below).
    # TRAP: ccxt coinbase.create_order *drops* a `clientOrderId` param and sends its own random
    # "ccxt-<uuid>" instead; only a `client_order_id` param reaches the wire.
    param="client_order_id",
    field="client_order_id",
    form="uuid",
    summary="a UUID (8-4-4-4-12 hex digits)",
    broken=_uuid_only,
)
_COINBASE_EXCHANGE = ClientIdRule(
    # client_oid "must be in UUID format ... You will receive an 'Invalid order id' error response
    # if it's not in UUID format." (Coinbase staff, https://forums.coinbasecloud.dev/t/
    # requirements-for-client-order-id/870; coinbase/coinbase-pro-node#345). ccxt
    # coinbaseexchange.create_order reads `clientOrderId` or `client_oid` into client_oid.
    param="clientOrderId",
    field="client_oid",
    form="uuid",
    summary="a UUID (8-4-4-4-12 hex digits)",
    broken=_uuid_only,
)

RULES: dict[str, ClientIdRule] = {
    "binance": _BINANCE,
    "binanceusdm": _BINANCE,  # ccxt's USD-M futures class; create_order is binance's
    "binancecoinm": _BINANCE,  # likewise COIN-M
    "okx": _OKX,
    "bybit": _BYBIT,
    "kraken": _KRAKEN,
    "coinbase": _COINBASE,
    "coinbaseexchange": _COINBASE_EXCHANGE,
}


def rule_for(exchange_id: str) -> ClientIdRule:
    """The rule of a ccxt exchange id, or ValueError for one N1V1 has no documented rule for."""
    rule = RULES.get(exchange_id)
    if rule is None:
        raise ValueError(
            f"exchange_id {exchange_id!r}: no client-order-id rule is known for it (known: "
            f"{', '.join(sorted(RULES))}); N1V1 does not guess one, because an id the exchange "
            "rejects or rewrites makes an order impossible to find after a timeout. Add the "
            "exchange's documented rule to n1v1/execution/client_ids.py"
        )
    return rule


def validate_client_id(exchange_id: str, cid: str) -> None:
    """ValueError naming the exchange's rule and how `cid` breaks it; None when it is valid."""
    rule = rule_for(exchange_id)
    problem = rule.broken(cid) if isinstance(cid, str) else f"it is a {type(cid).__name__}"
    if problem is not None:
        raise ValueError(
            f"{exchange_id} {rule.field} {cid!r}: must be {rule.summary}, but {problem}"
        )


def exchange_client_id(exchange_id: str, client_order_id: str) -> str:
    """The id to send `exchange_id` for the engine order `client_order_id`: the id itself when
    the exchange accepts it, else one derived from it deterministically (see the module doc)."""
    rule = rule_for(exchange_id)
    if not isinstance(client_order_id, str) or not client_order_id:
        raise ValueError(f"client_order_id {client_order_id!r}: must be a non-empty string")
    if rule.broken(client_order_id) is None:
        return client_order_id
    if rule.form == "uuid":
        derived = str(uuid.uuid5(N1V1_ID_NAMESPACE, client_order_id))
    else:
        digest = hashlib.sha256((_TOKEN_DOMAIN + client_order_id).encode()).hexdigest()
        derived = "n1" + digest[:30]
    validate_client_id(exchange_id, derived)  # a rule this module cannot satisfy is a bug here
    return derived


def ccxt_client_id_params(exchange_id: str, cid: str) -> dict[str, str]:
    """The params to merge into ccxt's ``create_order(..., params)`` so the exchange receives the
    client id of `cid` (converted with `exchange_client_id`, which leaves a valid id as it is)."""
    return {rule_for(exchange_id).param: exchange_client_id(exchange_id, cid)}
