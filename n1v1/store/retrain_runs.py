"""Scheduled retraining runs: one row per model and scheduled time (`retrain_runs`).

`n1v1 retrain` writes these rows only while it holds the lease `retrain:<model>` (see
`n1v1.cli.retrain`), and every write checks, inside its transaction, that the row is still its own:

- `claim_run` (under the lease, fenced by its token) marks the rows of runs whose holder lost the
  lease before finishing as `abandoned`, then inserts the tick's row in state `running`, or takes
  over the tick's earlier attempt (`failed` or `abandoned`) with `attempt` + 1. A tick whose row is
  `done` is not claimed: the caller exits without training.
- `record_version` notes the version the run registered as soon as it exists, so that a retry of
  the tick after a crash between registering and promoting goes straight to the gate instead of
  registering the same weights again.
- `finish_run` moves the run's own row (same holder and lease token, still `running`) to `done` or
  `failed` with the version it produced and the outcome.

States: `running`, `done` (trained and registered, promoted or not: the outcome says), `failed`
(training or promotion raised; a later run for the same tick tries again), `abandoned` (its holder
lost the lease without finishing: crashed, evicted, or stalled past the lease's expiry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from sqlalchemy import Connection, and_, select, update

from n1v1.store.lease import Lease, LeaseLostError
from n1v1.store.schema import Store, lease, retrain_runs

STATES = ("running", "done", "failed", "abandoned")


@dataclass(frozen=True, slots=True)
class RetrainRun:
    model: str
    scheduled_at: pd.Timestamp
    schedule: str
    state: str
    holder: str
    lease_token: int
    attempt: int
    run_name: str
    started_at: pd.Timestamp
    finished_at: pd.Timestamp | None
    version: str | None
    promoted: bool | None
    outcome: str


def lease_resource(model: str) -> str:
    """The lease a retraining run of `model` holds: one run per model at a time."""
    return f"retrain:{model}"


def _now(now: pd.Timestamp | None) -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("us") if now is None else now.tz_convert("UTC")


def _row(row: object) -> RetrainRun:
    m = row._mapping  # type: ignore[attr-defined]
    return RetrainRun(
        model=m["model"],
        scheduled_at=m["scheduled_at"],
        schedule=m["schedule"],
        state=m["state"],
        holder=m["holder"],
        lease_token=int(m["lease_token"]),
        attempt=int(m["attempt"]),
        run_name=m["run_name"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        version=m["version"],
        promoted=None if m["promoted"] is None else bool(m["promoted"]),
        outcome=m["outcome"],
    )


def get_run(store: Store, model: str, scheduled_at: pd.Timestamp) -> RetrainRun | None:
    """The row of `model`'s run for `scheduled_at`, or None."""
    with store.engine.connect() as conn:
        return _get(conn, model, scheduled_at)


def _get(conn: Connection, model: str, scheduled_at: pd.Timestamp) -> RetrainRun | None:
    row = conn.execute(
        select(retrain_runs).where(
            retrain_runs.c.model == model, retrain_runs.c.scheduled_at == scheduled_at
        )
    ).first()
    return None if row is None else _row(row)


def list_runs(store: Store, model: str | None = None) -> list[RetrainRun]:
    """Every run (of `model`), oldest scheduled time first."""
    query = select(retrain_runs).order_by(retrain_runs.c.scheduled_at, retrain_runs.c.model)
    if model is not None:
        query = query.where(retrain_runs.c.model == model)
    with store.engine.connect() as conn:
        return [_row(row) for row in conn.execute(query)]


def _check_token(conn: Connection, held: Lease) -> None:
    """Inside the caller's transaction: the lease still carries `held`'s token (on PostgreSQL the
    row is share-locked, so a takeover waits for this transaction)."""
    query = select(lease).where(lease.c.resource == held.resource)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    if row is None or int(row.token) != held.token or row.holder != held.holder:
        now = "nobody" if row is None else f"{row.holder!r} (token {row.token})"
        raise LeaseLostError(
            f"lease {held.resource!r}: {held.holder!r} no longer holds token {held.token}; "
            f"it is held by {now}"
        )


def claim_run(
    store: Store,
    held: Lease,
    *,
    model: str,
    scheduled_at: pd.Timestamp,
    schedule: str,
    run_name: str,
    now: pd.Timestamp | None = None,
) -> tuple[RetrainRun, bool]:
    """Under the lease `held` (of `lease_resource(model)`): abandon other holders' unfinished runs
    of `model`, then claim the tick's run. Returns (row, claimed); `claimed` is False only when the
    tick's run is already `done` (the row is returned as it is)."""
    if held.resource != lease_resource(model):
        raise ValueError(f"claim_run: lease {held.resource!r} is not {lease_resource(model)!r}")
    now = _now(now)
    with store.transaction() as conn:
        _check_token(conn, held)
        conn.execute(
            update(retrain_runs)
            .where(
                retrain_runs.c.model == model,
                retrain_runs.c.state == "running",
                retrain_runs.c.holder != held.holder,
            )
            .values(
                state="abandoned",
                finished_at=now,
                outcome=(
                    f"abandoned: its holder lost the lease {held.resource!r} before finishing "
                    f"(crashed, evicted or stalled); {held.holder!r} took it over at "
                    f"{now.isoformat()}"
                ),
            )
        )
        existing = _get(conn, model, scheduled_at)
        if existing is not None and existing.state == "done":
            return existing, False
        values = {
            "schedule": schedule,
            "state": "running",
            "holder": held.holder,
            "lease_token": held.token,
            "run_name": run_name,
            "started_at": now,
            "finished_at": None,
            "promoted": None,
            "outcome": "training",
        }  # an earlier attempt's registered version is kept: the retry goes to the gate with it
        if existing is None:
            conn.execute(
                retrain_runs.insert().values(
                    model=model, scheduled_at=scheduled_at, attempt=1, version=None, **values
                )
            )
        else:
            conn.execute(
                update(retrain_runs)
                .where(retrain_runs.c.model == model, retrain_runs.c.scheduled_at == scheduled_at)
                .values(attempt=existing.attempt + 1, **values)
            )
        claimed = _get(conn, model, scheduled_at)
    assert claimed is not None
    return claimed, True


def _ours(run: RetrainRun) -> Any:
    """The WHERE clause of a write to our own claimed, unfinished row."""
    return and_(
        retrain_runs.c.model == run.model,
        retrain_runs.c.scheduled_at == run.scheduled_at,
        retrain_runs.c.holder == run.holder,
        retrain_runs.c.lease_token == run.lease_token,
        retrain_runs.c.state == "running",
    )


def record_version(store: Store, run: RetrainRun, version: str) -> RetrainRun:
    """Note the version our run registered; LeaseLostError when the row is no longer ours."""
    with store.transaction() as conn:
        n = conn.execute(update(retrain_runs).where(_ours(run)).values(version=version)).rowcount
    if n != 1:
        raise LeaseLostError(
            f"retrain run {run.model} @ {run.scheduled_at.isoformat()}: {run.holder!r} no longer "
            "holds it (another run took the lease over)"
        )
    return replace(run, version=version)


def finish_run(
    store: Store,
    run: RetrainRun,
    *,
    state: str,
    outcome: str,
    version: str | None = None,
    promoted: bool | None = None,
    now: pd.Timestamp | None = None,
) -> bool:
    """Close our own claimed run as `done` or `failed` (`version` None keeps the version noted by
    `record_version`). False (nothing written) when the row is no longer ours: another holder took
    the lease and the run over."""
    if state not in ("done", "failed"):
        raise ValueError(f"finish_run: state must be done or failed, got {state!r}")
    values = {"state": state, "finished_at": _now(now), "promoted": promoted, "outcome": outcome}
    if version is not None:  # else keep what record_version noted
        values["version"] = version
    with store.transaction() as conn:
        n = conn.execute(update(retrain_runs).where(_ours(run)).values(**values)).rowcount
    return n == 1
