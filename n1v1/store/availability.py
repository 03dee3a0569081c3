"""A store that cannot be reached, told apart from a store that refuses what was asked.

A database outage (the server down or restarting, the network cut, a connection dropped, SQLite's
file locked past its busy timeout) is transient: the engine stops trading, waits until the store
answers again, and rebuilds from it (n1v1/live/session.py). An error in what was asked (a
constraint, a missing table, a fencing token gone stale) is not: retrying it would hide a bug, so
it stops the session as before. SQLAlchemy marks the first kind: a DBAPI `OperationalError` or
`InterfaceError`, or any error after which it invalidated the connection as disconnected.

Readers (the gateway) use the same test to answer 503 with `Retry-After` instead of a 500.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from n1v1.store.schema import Store, create_store, open_engine

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # what a 503 caused by an unreachable store tells the caller to wait


def is_unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached now, rather than that it refused."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError)


def unreachable_reason(exc: BaseException) -> str:
    """One line for the status, the log and a 503: the driver's message without the SQL and its
    parameters that SQLAlchemy appends (a parameter can be a journal row)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    message = lines[0] if lines else ""
    return f"{type(cause).__name__}: {message}"[:300]


def probe(store: Store) -> str | None:
    """None when the store can start a write transaction (SQLite: not locked past its busy
    timeout) and answer `SELECT 1` in it, else why not (one line). A connection the pool kept from
    before an outage is found dead here and dropped, so the next probe opens a new one."""
    try:
        with store.transaction() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        return unreachable_reason(exc)
    return None


def open_store(url: str) -> Store:
    """`create_store`, or, while the database cannot be reached, the store unchecked: a replica
    starting during an outage then comes up and waits for the database instead of failing its
    constructor in a loop. Its user checks the schema once the database answers
    (`check_store`, which the engine runs at every take-over)."""
    try:
        return create_store(url)
    except Exception as exc:
        if not is_unreachable(exc):
            raise
        log.warning("store unreachable at start, opened unchecked: %s", unreachable_reason(exc))
        return Store(open_engine(url))
