"""Bar -> decisions with the model in the loop: 10 symbols x 3 strategies, one of them `ml_signal`
answered by the Model deployment's replicas, every step journaled on SQLite and on PostgreSQL.

    python bench/decisions.py [--bars 1500] [--skip sqlite,postgresql,local] [--json PATH]

A running `TradingSession` (the Engine replica's code) is fed synthetic 1-minute bars as fast as
it takes them, with its `ml_signal` slot asking a real `Model` deployment on a local Ray
(`ServePredictor`: deployment handle, multiplexed by model id) and its store a SQLite file or a
PostgreSQL database (`--postgres-url`, default the machine's; a schema of its own, dropped after).
For comparison the same session with `LocalPredictor` (the model in this process) shows what the
Ray round trip costs. Per step (after the 500-bar window has filled), from `session.step_phases`:

- step: the whole `_process_step`, from taking the bar to the commit of its transaction;
- decision: bar -> decisions (what `n1v1_decision_latency_seconds` observes);
- features: the ml_signal slot's feature rows for 10 symbols (and the requests);
- model_wait: the wait for the replicas beyond what the step did meanwhile (the other
  strategies, the fenced BEGIN and the bar rows);
- journal_inputs: the fenced BEGIN, the bars and the model answers (the wait left out); decide:
  the engine (targets, risk, orders, fills); store_commit: positions, step marker and the commit.

Target (issue 11): step p99 < 25 ms on this 2-core machine. BENCHMARKS.md keeps the output.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import (  # noqa: E402
    ENGINE_SETTINGS,
    ENGINE_SYMBOLS,
    engine_frames,
    machine_info,
    register_tiny,
    wait_for_quiet,
)

from n1v1.live.config import StrategySlot  # noqa: E402

SLOTS = [
    StrategySlot(name="ema_cross"),
    StrategySlot(name="rsi"),
    StrategySlot(name="ml_signal", id="ml", params={"model": "tiny"}),
]
PHASES = ("step", "decision", "features", "model_wait", "journal_inputs", "decide", "store_commit")
TARGET_P99_MS = 25.0
WINDOW = 500


def postgres_schema(base: str) -> tuple[str, Any]:
    """A URL on a fresh schema of `base`'s database, and a function that drops it."""
    from sqlalchemy import create_engine

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in base else "?"

    def drop() -> None:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()

    return f"{base}{sep}options=-csearch_path%3D{name}", drop


def run(frames: dict[str, Any], store_url: str, root: Path, predictor: Any) -> dict[str, Any]:
    """A session over the whole feed; per-phase percentiles over the steps after the window."""
    from n1v1.live.replay import PacedReplay
    from n1v1.live.session import TradingSession
    from n1v1.store import create_store

    settings = ENGINE_SETTINGS.model_copy(
        update={"ml": ENGINE_SETTINGS.ml.model_copy(update={"model_root": str(root)})}
    )
    store = create_store(store_url)
    phases: list[dict[str, float]] = []
    failures: list[str] = []

    def on_step(decision_s: float, _engine: Any) -> None:
        phases.append({**session.step_phases, "decision": decision_s})

    def on_predictions(records: list[Any]) -> None:
        failures.extend(r.status for r in records if r.status not in ("ok", "not_ready"))

    feed = PacedReplay(frames, 0)
    session = TradingSession(
        settings,
        list(SLOTS),
        feed,
        store,
        window=WINDOW,
        predictor=predictor,
        prediction_timeout_s=2.0,  # the bench measures the wait; a timeout would hide it
        on_step=on_step,
        on_predictions=on_predictions,
    )
    n_steps = len(feed)
    started = time.perf_counter()
    session.start()
    try:
        while session.snapshot.get("step") != n_steps or not feed.exhausted:
            if not session.alive:
                raise RuntimeError(f"session died: {session.state} {session.failure}")
            time.sleep(0.05)
    finally:
        session.stop()
        store.dispose()
    wall = time.perf_counter() - started
    steady = phases[WINDOW:]
    out: dict[str, Any] = {"steps": len(steady), "steps_per_s": n_steps / wall}
    for name in PHASES:
        ms = np.asarray([p[name] for p in steady]) * 1e3
        out[name] = {
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()),
        }
    out["failed_predictions"] = len(failures)
    return out


def print_result(label: str, r: dict[str, Any]) -> None:
    step = r["step"]
    ok = step["p99_ms"] < TARGET_P99_MS
    print(
        f"\n### {label}: {r['steps']:,} steps ({r['steps_per_s']:.0f} steps/s over the run), "
        f"step p50 {step['p50_ms']:.2f} ms, p99 {step['p99_ms']:.2f} ms -> "
        f"{'PASS' if ok else 'FAIL'} (target p99 < {TARGET_P99_MS:g} ms); model calls without "
        f"an answer: {r['failed_predictions']}",
        flush=True,
    )
    print("| phase | p50 ms | p99 ms | mean ms |\n|---|---|---|---|")
    for name in PHASES:
        p = r[name]
        print(f"| {name} | {p['p50_ms']:.2f} | {p['p99_ms']:.2f} | {p['mean_ms']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1500, help="synthetic 1m bars per symbol")
    ap.add_argument("--skip", default="", help="comma list of: sqlite, postgresql, local")
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1/test"),
    )
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--max-wait", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    skip = {s for s in a.skip.split(",") if s}
    info = machine_info()
    print(f"# bar -> decisions with the model in the loop ({time.strftime('%Y-%m-%d')})")
    print(", ".join(f"{k}: {v}" for k, v in info.items()))
    print(
        f"{ENGINE_SYMBOLS} symbols x {a.bars:,} synthetic 1m bars, strategies "
        f"{', '.join(s.slot_id for s in SLOTS)} (ml: the tiny MLP), window {WINDOW} bars; "
        "the feed hands over the next bar as soon as the previous step is done"
    )
    report: dict[str, Any] = {"machine": info, "argv": sys.argv[1:]}
    frames = engine_frames(a.bars)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        root = tmp / "models"
        register_tiny(root)
        report["load_at_start"] = wait_for_quiet(a.max_load, a.max_wait, "decisions")
        if "local" not in skip:
            from n1v1.live.predictions import LocalPredictor

            r = run(frames, f"sqlite:///{tmp / 'local.db'}", root, LocalPredictor(str(root)))
            print_result("SQLite, the model in this process (LocalPredictor, no Ray)", r)
            report["local_sqlite"] = r
        import ray
        from ray import serve

        from n1v1.cli.local_ray import free_port
        from n1v1.serve.model import Model
        from n1v1.serve.predictor import ServePredictor

        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
            model = Model.options(autoscaling_config=None, num_replicas=1).bind(
                str(root), 64, 0.005, 2.0
            )
            handle = serve.run(model, name="bench_models", route_prefix=None)
            predictor = ServePredictor(handle)
            if "sqlite" not in skip:
                r = run(frames, f"sqlite:///{tmp / 'serve.db'}", root, predictor)
                print_result("SQLite, the model on a Model replica (Ray Serve handle)", r)
                report["serve_sqlite"] = r
            if "postgresql" not in skip:
                url, drop = postgres_schema(a.postgres_url)
                try:
                    r = run(frames, url, root, predictor)
                finally:
                    drop()
                print_result("PostgreSQL, the model on a Model replica (Ray Serve handle)", r)
                report["serve_postgresql"] = r
        finally:
            serve.shutdown()
            ray.shutdown()
    if a.json:
        a.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
