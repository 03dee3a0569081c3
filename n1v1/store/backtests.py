"""Backtest jobs requested through the API: one row per job, written by the gateway (queued) and by
the Ray task that runs it (running, then done or failed), read by any gateway replica.

Not fenced: these rows belong to no engine, and a job id is a random token, so two writers never
touch the same row at once except the task advancing its own job.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import pandas as pd
from sqlalchemy import func, select, update

from n1v1.store import schema as t
from n1v1.store.schema import Store

STATUSES = ("queued", "running", "done", "failed")


def _now() -> pd.Timestamp:
    return pd.Timestamp.now(tz="UTC").floor("us")


def create_backtest(store: Store, job_id: str, request: Mapping[str, Any], actor: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            t.backtests.insert().values(
                id=job_id, status="queued", request=dict(request), actor=actor, created_at=_now()
            )
        )


def update_backtest(
    store: Store,
    job_id: str,
    status: str,
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    report: str | None = None,
) -> None:
    """Set a job's status; a finished one's result or error, and its HTML report (stored
    zlib-compressed: the inlined charting library makes most of a page, and compresses well)."""
    if status not in STATUSES:
        raise ValueError(f"backtest status {status!r}: expected one of {STATUSES}")
    values: dict[str, Any] = {"status": status}
    if status in ("done", "failed"):
        values.update(finished_at=_now(), result=dict(result) if result else None, error=error)
        values["report"] = None if report is None else zlib.compress(report.encode("utf-8"), 6)
    with store.transaction() as conn:
        n = conn.execute(update(t.backtests).where(t.backtests.c.id == job_id).values(**values))
        if n.rowcount != 1:
            raise KeyError(f"backtest {job_id!r} not found")


def get_backtest(store: Store, job_id: str) -> dict[str, Any] | None:
    with store.engine.connect() as conn:
        row = conn.execute(select(t.backtests).where(t.backtests.c.id == job_id)).first()
    if row is None:
        return None
    out = dict(row._mapping)
    for key in ("created_at", "finished_at"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    out["report"] = out["report"] is not None  # the page itself: `backtest_report`
    return out


def backtest_report(store: Store, job_id: str) -> str | None:
    """The HTML report of a finished job (None: no such job, or it has none: failed, or run
    before schema version 9)."""
    b = t.backtests
    with store.engine.connect() as conn:
        packed = conn.execute(select(b.c.report).where(b.c.id == job_id)).scalar_one_or_none()
    return None if packed is None else zlib.decompress(packed).decode("utf-8")


def list_backtests(store: Store, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of backtests, newest first, each with its request, status, times and headline
    figures (total return, Sharpe, max drawdown, trades) once done; and how many there are."""
    b = t.backtests
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(b).order_by(b.c.created_at.desc(), b.c.id.desc()).limit(limit).offset(offset)
        ).all()
        total = int(conn.execute(select(func.count()).select_from(b)).scalar_one())
    out = []
    for row in rows:
        metrics = (row.result or {}).get("metrics") or {}
        out.append(
            {
                "id": row.id,
                "status": row.status,
                "request": row.request,
                "created_at": row.created_at.isoformat(),
                "finished_at": None if row.finished_at is None else row.finished_at.isoformat(),
                "error": row.error,
                "headline": {
                    k: metrics.get(k)
                    for k in ("total_return", "sharpe", "max_drawdown", "n_trades", "final_equity")
                },
            }
        )
    return out, total
