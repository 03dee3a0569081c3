"""A lease with a fencing token: at most one engine may write to the store at a time.

`acquire` is a single conditional UPDATE (taken when the lease is expired or already ours) or,
for a resource never leased before, an INSERT; both are atomic on SQLite and PostgreSQL. The token
rises by one on every new acquisition, so a stale holder's writes (checked against the token by
SqlJournal) fail even if it never noticed it lost the lease.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.exc import IntegrityError

from n1v1.store.schema import Store, lease


class LeaseHeldError(RuntimeError):
    """Another holder has a live lease on the resource."""


class LeaseLostError(RuntimeError):
    """Renew or release by a holder that no longer holds the lease."""


@dataclass(frozen=True, slots=True)
class Lease:
    resource: str
    holder: str
    token: int
    expires_at: pd.Timestamp


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    if now is None:
        return pd.Timestamp.now(tz="UTC").floor("us")
    if now.tzinfo is None:
        raise ValueError(f"now={now} has no time zone; leases use UTC")
    return now.tz_convert("UTC")


def _check(resource: str, holder: str, ttl_seconds: float) -> None:
    if not resource or not holder:
        raise ValueError("lease: resource and holder must be non-empty")
    if not ttl_seconds > 0:
        raise ValueError(f"lease ttl_seconds must be > 0, got {ttl_seconds}")


def acquire(
    store: Store,
    resource: str,
    holder: str,
    ttl_seconds: float,
    now: pd.Timestamp | None = None,
) -> Lease:
    """Take (or renew, keeping the token) the lease; LeaseHeldError names the live holder."""
    _check(resource, holder, ttl_seconds)
    now = _now(now)
    expires = now + pd.Timedelta(seconds=ttl_seconds)
    still_ours = and_(lease.c.holder == holder, lease.c.expires_at > now)
    for _ in range(2):  # a second pass only if a concurrent INSERT won the race for a new row
        with store.transaction() as conn:
            result = conn.execute(
                update(lease)
                .where(
                    lease.c.resource == resource,
                    or_(lease.c.holder == holder, lease.c.expires_at <= now),
                )
                .values(
                    holder=holder,
                    token=case((still_ours, lease.c.token), else_=lease.c.token + 1),
                    expires_at=expires,
                )
                .returning(lease.c.token)
            )
            row = result.first()
            if row is not None:
                return Lease(resource, holder, int(row.token), expires)
            current = conn.execute(select(lease).where(lease.c.resource == resource)).first()
            if current is not None:
                raise LeaseHeldError(
                    f"lease {resource!r} is held by {current.holder!r} until "
                    f"{current.expires_at.isoformat()} (token {current.token}); "
                    f"{holder!r} may not trade"
                )
        try:
            with store.transaction() as conn:
                conn.execute(
                    lease.insert().values(
                        resource=resource, holder=holder, token=1, expires_at=expires
                    )
                )
            return Lease(resource, holder, 1, expires)
        except IntegrityError:
            continue
    raise LeaseHeldError(f"lease {resource!r}: lost a race to create it; try again")


def renew(
    store: Store, current: Lease, ttl_seconds: float, now: pd.Timestamp | None = None
) -> Lease:
    """Extend a lease we still hold (same token); LeaseLostError if someone else took it."""
    _check(current.resource, current.holder, ttl_seconds)
    now = _now(now)
    expires = now + pd.Timedelta(seconds=ttl_seconds)
    with store.transaction() as conn:
        n = conn.execute(
            update(lease)
            .where(
                lease.c.resource == current.resource,
                lease.c.holder == current.holder,
                lease.c.token == current.token,
            )
            .values(expires_at=expires)
        ).rowcount
    if n != 1:
        raise LeaseLostError(
            f"lease {current.resource!r}: {current.holder!r} no longer holds token {current.token}"
        )
    return Lease(current.resource, current.holder, current.token, expires)


def release(store: Store, current: Lease, now: pd.Timestamp | None = None) -> None:
    """Expire our lease now so the next engine need not wait out the TTL; a no-op if lost."""
    now = _now(now)
    with store.transaction() as conn:
        conn.execute(
            update(lease)
            .where(
                lease.c.resource == current.resource,
                lease.c.holder == current.holder,
                lease.c.token == current.token,
            )
            .values(expires_at=now)
        )


def current_lease(store: Store, resource: str) -> Lease | None:
    """The lease row as stored (possibly expired), for health checks and the status API."""
    with store.engine.connect() as conn:
        row = conn.execute(select(lease).where(lease.c.resource == resource)).first()
    if row is None:
        return None
    return Lease(resource, row.holder, int(row.token), row.expires_at)
