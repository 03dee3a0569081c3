"""The state store: orders, fills, signals, risk decisions, equity, audit log and the engine lease
in one SQL database (SQLite by default, PostgreSQL by URL). See docs/store.md."""

from n1v1.store.journal import (
    FencingError,
    FillConflictError,
    SqlJournal,
    StoreReader,
    record_audit,
)
from n1v1.store.lease import (
    Lease,
    LeaseHeldError,
    LeaseLostError,
    acquire,
    current_lease,
    release,
    renew,
)
from n1v1.store.schema import SCHEMA_VERSION, SchemaVersionError, Store, create_store

__all__ = [
    "SCHEMA_VERSION",
    "FencingError",
    "FillConflictError",
    "Lease",
    "LeaseHeldError",
    "LeaseLostError",
    "SchemaVersionError",
    "SqlJournal",
    "Store",
    "StoreReader",
    "acquire",
    "create_store",
    "current_lease",
    "record_audit",
    "release",
    "renew",
]
