"""Snapshots in the store: the engine's state as a JSON document, written inside a step's fenced
transaction, kept compressed with its checksum, and read back newest first by a recovering engine.

What the document holds is n1v1/live/snapshot.py's business; here it is bytes with a SHA-256, a
size and the journal marks that say where the journal stood when it was taken (docs/store.md,
"Snapshots").
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import Connection, delete, func, select

from n1v1.store import schema as t
from n1v1.store.schema import Store

# zlib level 1: the write is inside a step. On a 10^6-step session's 4.0 MB document it kept 36 %
# in 32 ms; level 6 kept 32 % in 147 ms (BENCHMARKS.md, "Recovery").
_LEVEL = 1


class SnapshotError(RuntimeError):
    """A stored snapshot that cannot be used: corrupt, of another format or configuration, or
    not restoring to the state it describes. Recovery reports it and takes an older one."""


@dataclass(frozen=True, slots=True)
class JournalMarks:
    """How far the journal went when a snapshot was taken: recovery replays the bar steps from
    `step` and the commands after `command_id`, and checks the fills after `fill_id` and the
    orders with events after `order_event_id` (all 0: a full replay)."""

    step: int = 0
    command_id: int = 0
    fill_id: int = 0
    order_event_id: int = 0


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    id: int
    step: int
    format: int
    reason: str
    created_at: pd.Timestamp
    size: int
    sha256: str


def journal_marks(conn: Connection, step: int) -> JournalMarks:
    """The journal's marks now (read inside the transaction that writes the snapshot)."""

    def last(table: object) -> int:
        return int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())  # type: ignore[attr-defined]

    return JournalMarks(step, last(t.commands), last(t.fills), last(t.order_events))


def insert_snapshot(
    conn: Connection,
    *,
    step: int,
    format: int,
    reason: str,
    document: bytes,
    keep: int,
    at: pd.Timestamp,
) -> StoredSnapshot:
    """Store `document` and delete all but the newest `keep` snapshots, in the caller's
    transaction (the step's, fenced by the lease token)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    digest = hashlib.sha256(document).hexdigest()
    row = {
        "step": step,
        "format": format,
        "reason": reason,
        "created_at": at,
        "size": len(document),
        "sha256": digest,
        "payload": zlib.compress(document, _LEVEL),
    }
    new_id = conn.execute(t.snapshots.insert().values(**row).returning(t.snapshots.c.id))
    snapshot_id = int(new_id.scalar_one())
    oldest_kept = (
        select(t.snapshots.c.id)
        .order_by(t.snapshots.c.id.desc())
        .limit(1)
        .offset(keep - 1)
        .scalar_subquery()
    )
    conn.execute(delete(t.snapshots).where(t.snapshots.c.id < oldest_kept))
    return StoredSnapshot(snapshot_id, step, format, reason, at, len(document), digest)


def list_snapshots(store: Store) -> list[StoredSnapshot]:
    """Every stored snapshot, newest first, without its document."""
    s = t.snapshots
    columns = (s.c.id, s.c.step, s.c.format, s.c.reason, s.c.created_at, s.c.size, s.c.sha256)
    with store.engine.connect() as conn:
        rows = conn.execute(select(*columns).order_by(s.c.id.desc())).all()
    return [StoredSnapshot(*row) for row in rows]


def load_document(store: Store, snapshot: StoredSnapshot) -> bytes:
    """The snapshot's JSON document, checked against its size and SHA-256 (SnapshotError)."""
    with store.engine.connect() as conn:
        payload = conn.execute(
            select(t.snapshots.c.payload).where(t.snapshots.c.id == snapshot.id)
        ).scalar_one_or_none()
    if payload is None:
        raise SnapshotError(f"snapshot {snapshot.id} is gone (deleted by a newer engine)")
    try:
        document = zlib.decompress(payload)
    except zlib.error as exc:
        raise SnapshotError(f"snapshot {snapshot.id}: cannot decompress it ({exc})") from None
    if len(document) != snapshot.size or hashlib.sha256(document).hexdigest() != snapshot.sha256:
        raise SnapshotError(
            f"snapshot {snapshot.id} (step {snapshot.step}): its document does not match its "
            f"size and SHA-256 (corrupt)"
        )
    return document
