"""Restart-to-trading time of a new engine against stored histories of 10^4, 10^5 and 10^6 steps:
full replay next to snapshot + replay.

    python bench/recovery.py [--sizes 10000,100000,1000000] [--every 1000] [--work DIR]
                             [--full-max 1000000] [--build-only | --measure-only]
                             [--postgres URL] [--json PATH] [--quick]

1. Build: one real paper session (`TradingSession` over SQLite, `PacedReplay` flat out, one
   symbol of seeded synthetic 1-minute bars, sma_cross + ema_cross at their defaults, 50 % of
   equity per position, a 2 % stop-loss, a snapshot every `--every` steps, 3 kept) trades the
   largest size; the feed holds at each size so the store is copied there (SQLite's backup API)
   as `history_<n>.db`. Every history is therefore a real session's store, and every recovery
   below checks its replayed steps against it. The session runs on tmpfs (/dev/shm) to save an
   hour of fsyncs; the copies are on disk (`--work`).
2. Measure, each in a fresh Python process (imports done, not timed; the numba cache and the
   page cache are warm, as on a replica restarting on the same node), on a fresh copy of a
   history whose holder's lease is marked expired (as after a crash): from
   `TradingSession.start()` to the state `running` (rebuilt, lease held, feed resumed), and to the
   first new step committed (trading), for three starts:
   - `snapshot`: the newest snapshot (taken at step n) and nothing to replay;
   - `worst`: the newest snapshot deleted, so the one `--every` steps older is restored and the
     `--every` steps since replayed and checked (a crash just before a snapshot);
   - `full`: every snapshot deleted: the whole history replayed and checked (the code before
     snapshots). Skipped above `--full-max` steps, and said so.
3. With `--postgres URL`, the same restarts on PostgreSQL: each history is copied row for row
   (COPY) into a fresh schema of that database, then measured as above.

Target (printed as PASS/FAIL): snapshot + replay under 10 s at 10^6 steps, and flat as history
grows. BENCHMARKS.md ("Recovery") copies the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine as bench_machine  # noqa: E402
import pandas as pd  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy import delete, select, update  # noqa: E402

from n1v1.config import Settings  # noqa: E402
from n1v1.data.synthetic import generate_bars  # noqa: E402
from n1v1.domain import Bar  # noqa: E402
from n1v1.live.config import StrategySlot  # noqa: E402
from n1v1.live.replay import PacedReplay  # noqa: E402
from n1v1.live.session import TradingSession  # noqa: E402
from n1v1.store import StoreReader, create_store  # noqa: E402
from n1v1.store import schema as t  # noqa: E402
from n1v1.store.schema import UtcTimestamp  # noqa: E402

SYMBOL = "BTC/USD"
SLOTS = [StrategySlot(name="sma_cross"), StrategySlot(name="ema_cross")]
SETTINGS = {"risk": {"fraction": 0.5, "stop_loss_pct": 0.02}}
WINDOW = 100
EXTRA = 10  # bars after the largest history: the first new step a recovered session trades
TARGET_S = 10.0
MODES = ("snapshot", "worst", "full")


def market(steps: int) -> dict[str, pd.DataFrame]:
    frame = generate_bars(steps, symbols=[SYMBOL], seed=0)
    assert isinstance(frame, pd.DataFrame)
    return {SYMBOL: frame}


def new_session(store: Any, feed: Any, every: int, holder: str) -> TradingSession:
    return TradingSession(
        Settings.model_validate(SETTINGS),
        list(SLOTS),
        feed,
        store,
        window=WINDOW,
        holder=holder,
        snapshot_every=every,
        snapshots_kept=3,
    )


class HeldReplay:
    """A flat-out replay that holds before the step after each of `holds` until `release`."""

    def __init__(self, frames: dict[str, pd.DataFrame], holds: list[int]) -> None:
        self._replay = PacedReplay(frames, 0)
        self.symbols = self._replay.symbols
        self.holds = sorted(holds)
        self.position = 0
        self.released: set[int] = set()

    @property
    def exhausted(self) -> bool:
        return self._replay.exhausted

    def describe(self) -> dict[str, Any]:
        return self._replay.describe()

    def resume_after(self, last: pd.Timestamp | None) -> None:
        assert last is None
        self._replay.resume_after(last)

    def next_step(self, timeout: float) -> tuple[pd.Timestamp, dict[str, Bar]] | None:
        if self.position in self.holds and self.position not in self.released:
            time.sleep(0.01)
            return None
        step = self._replay.next_step(timeout)
        if step is not None:
            self.position += 1
        return step


def build(work: Path, sizes: list[int], every: int) -> dict[str, Any]:
    """One session trades max(sizes) steps; its store is copied at each size."""
    scratch = Path("/dev/shm") / f"n1v1-recovery-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    live = scratch / "live.db"
    store = create_store(f"sqlite:///{live}")
    feed = HeldReplay(market(max(sizes) + EXTRA), sizes)
    session = new_session(store, feed, every, "builder")
    built: dict[str, Any] = {}
    started = time.perf_counter()
    session.start()
    try:
        for n in sizes:
            while session.snapshot.get("step") != n or feed.position != n:
                if not session.alive:
                    raise RuntimeError(f"the building session died: {session.failure}")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            target = work / f"history_{n}.db"
            _copy(live, target)
            built[str(n)] = {
                "steps": n,
                "seconds_to_build": round(elapsed, 1),
                "steps_per_s": round(n / elapsed, 1),
                "snapshot_written": dict(session.last_snapshot),
                "closed_trades": len(session.engine.portfolio.closed_trades),
                "file_mb": round(target.stat().st_size / 1e6, 1),
            }
            print(f"  built {n:>9,} steps in {elapsed:7.1f} s: {built[str(n)]}", flush=True)
            feed.released.add(n)
    finally:
        session.stop()
        store.dispose()
        shutil.rmtree(scratch, ignore_errors=True)
    return built


def measure_one(
    work: Path, n: int, mode: str, every: int, bars: int, postgres: str | None
) -> dict[str, Any]:
    """One restart (module docstring), in this process; returns its figures."""
    history = work / f"history_{n}.db"
    path = work / f"run_{n}_{mode}.db"
    schema = f"bench_recovery_{n}_{mode}_{os.getpid()}"
    if postgres is None:
        _copy(history, path)
        url = f"sqlite:///{path}"
    else:
        url = _postgres_copy(history, postgres, schema)
    store = create_store(url)
    with store.transaction() as conn:  # the holder died; start from the snapshot asked for
        expired = pd.Timestamp.now(tz="UTC").floor("us") - pd.Timedelta(seconds=1)
        conn.execute(update(t.lease).values(expires_at=expired))
        ids = conn.execute(select(t.snapshots.c.id).order_by(t.snapshots.c.id.desc()))
        newest = ids.scalars().first()
        if mode == "worst":
            conn.execute(delete(t.snapshots).where(t.snapshots.c.id == newest))
        elif mode == "full":
            conn.execute(delete(t.snapshots))
    feed = PacedReplay({SYMBOL: market(bars)[SYMBOL].iloc[: n + EXTRA]}, 0)  # the history's bars
    session = new_session(store, feed, every, f"restart-{mode}")
    started = time.perf_counter()
    session.start()
    while session.state not in ("running", "failed"):
        time.sleep(0.002)
    running = time.perf_counter() - started
    while session.snapshot.get("step") != n + 1 and session.alive:
        time.sleep(0.002)
    trading = time.perf_counter() - started
    out = {
        "steps": n,
        "mode": mode,
        "state": session.state,
        "failure": session.failure,
        "to_running_s": round(running, 3),
        "to_first_step_s": round(trading, 3),
        "recovery": session.recovery,
        "rss_mb": round(_rss_mb(), 1),
    }
    session.stop()
    assert len(StoreReader(store).bar_log(n)) >= 1  # the first new step is stored
    store.dispose()
    if postgres is None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        _drop_schema(postgres, schema)
    out["backend"] = "sqlite" if postgres is None else "postgresql"
    return out


def _postgres_copy(history: Path, base: str, schema: str) -> str:
    """A new schema on PostgreSQL holding every row of the SQLite `history` (COPY); its URL."""
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    create_store(url).dispose()  # the tables, at the head
    target = sa.create_engine(url)
    raw = target.raw_connection()
    try:
        cursor = raw.cursor()
        with closing(sqlite3.connect(history)) as source:
            for table in t.metadata.sorted_tables:
                if table.name in ("schema_version",):
                    continue
                names = [c.name for c in table.columns]
                times = [isinstance(c.type, UtcTimestamp) for c in table.columns]
                rows = source.execute(f"SELECT {', '.join(names)} FROM {table.name}")
                with cursor.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(
                            [
                                _utc(v) if is_time and v is not None else v
                                for v, is_time in zip(row, times, strict=True)
                            ]
                        )
                if "id" in table.c and isinstance(table.c.id.type, sa.Integer):
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"GREATEST((SELECT max(id) FROM {table.name}), 1))"
                    )
        raw.commit()
    finally:
        raw.close()
        target.dispose()
    return url


def _utc(ns: int) -> dt.datetime:
    """A time as the SQLite store keeps it (ns since the epoch), as PostgreSQL keeps it (us)."""
    if ns % 1000:
        raise ValueError(f"time {ns} has nanoseconds; PostgreSQL keeps microseconds")
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=ns // 1000)


def _drop_schema(base: str, schema: str) -> None:
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def _copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (its WAL included), every connection closed after."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    work: Path, sizes: list[int], every: int, full_max: int, postgres: str | None
) -> list[dict[str, Any]]:
    bars = max(sizes) + EXTRA
    rows = []
    for n in sizes:
        for mode in MODES:
            if mode == "full" and n > full_max:
                print(f"  {n:>9,} {mode:8}: skipped (--full-max {full_max:,})", flush=True)
                continue
            pg = [] if postgres is None else ["--postgres", postgres]
            done = subprocess.run(
                [sys.executable, __file__, "--measure-one", f"{n}:{mode}:{bars}",
                 "--work", str(work), "--every", str(every), *pg],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"{n} {mode}: {done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            rec = row["recovery"]
            print(
                f"  {n:>9,} {mode:8}: running after {row['to_running_s']:8.3f} s, first step "
                f"after {row['to_first_step_s']:8.3f} s; from snapshot "
                f"{rec['from_snapshot_step']}, replayed {rec['replayed_steps']:,} steps, "
                f"peak RSS {row['rss_mb']:.0f} MB, {row['state']}",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="history sizes, in steps")
    ap.add_argument("--every", type=int, default=1000, help="steps between snapshots")
    ap.add_argument("--work", type=Path, default=Path("/tmp/n1v1-bench-recovery"))
    ap.add_argument("--full-max", type=int, default=1_000_000, help="largest full replay to run")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--measure-only", action="store_true", help="reuse the histories in --work")
    ap.add_argument("--postgres", metavar="URL", help="measure on PostgreSQL (module docstring)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2,000 and 5,000 steps")
    ap.add_argument("--measure-one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.measure_one:
        n, mode, bars = a.measure_one.split(":")
        figures = measure_one(a.work, int(n), mode, a.every, int(bars), a.postgres)
        print(json.dumps(figures))
        return
    sizes = [2000, 5000] if a.quick else sorted(int(s) for s in a.sizes.split(","))
    every = 500 if a.quick else a.every
    a.work.mkdir(parents=True, exist_ok=True)
    info = bench_machine.machine_info("numpy", "pandas", "sqlalchemy", "orjson")
    print("machine:", json.dumps(info))
    print(
        f"workload: {SYMBOL} synthetic 1m bars (seed 0), {', '.join(s.name for s in SLOTS)}, "
        f"window {WINDOW}, risk {SETTINGS['risk']}, a snapshot every {every} steps (3 kept)"
    )
    report: dict[str, Any] = {"machine": info, "sizes": sizes, "every": every}
    if not a.measure_only:
        print("build (one session; copies at each size):")
        report["build"] = build(a.work, sizes, every)
    if not a.build_only:
        where = "SQLite" if a.postgres is None else "PostgreSQL"
        print(f"restart to trading ({where}):")
        rows = measure(a.work, sizes, every, a.full_max, a.postgres)
        report["restarts"] = rows
        worst = [r for r in rows if r["mode"] == "worst"]
        largest = max(worst, key=lambda r: r["steps"])
        verdict = "PASS" if largest["to_first_step_s"] < TARGET_S else "FAIL"
        print(
            f"target: snapshot + replay (worst case) under {TARGET_S:g} s at "
            f"{largest['steps']:,} steps: {verdict} ({largest['to_first_step_s']:.3f} s); "
            "flat as history grows: "
            + ", ".join(f"{r['steps']:,}: {r['to_first_step_s']:.3f} s" for r in worst)
        )
    if a.json is not None:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
