"""Distributed sweep speed: RayEvaluator with 1 and 2 workers next to vectorbt, in one run.

    python bench/sweep.py [--bars 1000000] [--symbols 2] [--rounds 2] [--max-load 0.8]
                          [--max-wait 900] [--json PATH] [--quick]

The workload is bench/backtest.py's sweep: its sma_cross grid (fast 5..50 step 5, slow 20..200
step 10, fast < slow: 174 sets) with its settings (0.1 % fee, 1 bps slippage, 2 % stop-loss), on
seeded synthetic 1-minute bars, here for `--symbols` symbols. Every figure is measured here:

- in-process: `local_evaluator` in this process, the single-core reference without Ray;
- Ray, 1 and 2 workers: `RayEvaluator()` (default chunking and in-flight limit) on a private local
  Ray started with num_cpus=1, then a new one with num_cpus=2 (separate clusters, so the 1-worker
  figure pays no idle second worker), alternating for `--rounds` rounds; the best round of each
  counts, and each round's rows are compared with local_evaluator's;
- while each Ray sweep runs, a sampler reads every Ray worker's RSS/USS/PSS (psutil) and the
  object store's bytes and objects (the raylet's memory report), to show the bars are held once;
- two probes on the 2-worker cluster for docs/scaling.md: the driver's cost per task (tiny tasks)
  and per result row (many cheap rows);
- vectorbt 1.2.0 on the same grid and the same bars, with bench/backtest.py's configuration, in
  one process (per core = bar evaluations / wall / (CPU time / wall), as there).

Targets: >= 1.8x from 1 to 2 workers; >= 3x vectorbt per core (ours per core: the lower of the
1-worker rate and the 2-worker rate / 2). "MB" in the output is 2**20 bytes. Results:
BENCHMARKS.md, docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# one thread per process everywhere (this process, every Ray worker: they inherit the environment)
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pandas as pd  # noqa: E402
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import backtest as bench_backtest  # noqa: E402  (bench/backtest.py: grid, settings, vectorbt)
import machine as bench_machine  # noqa: E402

from n1v1.cluster import ensure_ray  # noqa: E402
from n1v1.data.synthetic import generate_bars  # noqa: E402
from n1v1.research.distributed import RayEvaluator  # noqa: E402
from n1v1.research.evaluate import evaluate_on_symbol, local_evaluator  # noqa: E402
from n1v1.research.space import grid_sets, random_sets  # noqa: E402
from n1v1.strategies.trend import SmaCross  # noqa: E402

SETTINGS = bench_backtest.SETTINGS
GRID = {"fast": "5:50:5", "slow": "20:200:10"}  # bench/backtest.py's grid(), as a sweep spec
QUICK_GRID = {"fast": "5:50:15", "slow": "20:200:60"}
MB = 1024 * 1024
Report = dict[str, Any]


# --------------------------------------------------------------------------- machine and load


def wait_for_quiet(max_load: float, max_wait: float) -> Report:
    """Start only once the 1-minute load average is <= max_load (or after max_wait seconds)."""
    before = os.getloadavg()[0]
    t0 = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - t0 < max_wait:
        time.sleep(5)
    waited, load = time.monotonic() - t0, os.getloadavg()[0]
    note = "" if load <= max_load else f" (still above {max_load:g} after {max_wait:g} s)"
    print(f"- 1-minute load average: {before:.2f} when the script started; waited {waited:.0f} s "
          f"for <= {max_load:g}; {load:.2f} at start{note}", flush=True)  # fmt: skip
    return {"load_when_started": before, "waited_s": waited, "load_at_start": load}


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs: how busy the whole machine was, not only us."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def timed(fn: Callable[[], Any]) -> tuple[Report, Any]:
    """Wall, this process's CPU and the machine's busy share around one call."""
    b0, t0_all = cpu_jiffies()
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    b1, t1_all = cpu_jiffies()
    busy = (b1 - b0) / max(t1_all - t0_all, 1)
    return {"wall_s": wall, "driver_cpu_s": cpu, "machine_busy": busy}, out


# --------------------------------------------------------------------------- Ray processes


def _ray_node() -> Any:
    # private API, bench only: the node this driver started (its raylet's pid, the GCS address)
    import ray

    return ray._private.worker._global_node


def ray_workers() -> list[psutil.Process]:
    """The Ray worker processes of this driver's local cluster (the raylet's "ray::" children,
    without its agents); other Ray clusters on the machine are not counted."""
    raylet = psutil.Process(_ray_node().all_processes["raylet"][0].process.pid)
    out = []
    for child in raylet.children():
        try:
            title = child.cmdline()[0] if child.cmdline() else ""
        except psutil.Error:
            continue
        if title.startswith("ray::") and not title.endswith("Agent"):
            out.append(child)
    return out


def worker_cpu_seconds(workers: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for proc in workers:
        try:
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


class Sampler(threading.Thread):
    """Peak RSS/USS/PSS per Ray worker and peak object-store use, polled while a sweep runs."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        from ray._private import internal_api

        self.interval = interval
        self.memory_reply = internal_api.get_memory_info_reply
        self.state = internal_api.get_state_from_address(_ray_node().gcs_address)
        self.stop_event = threading.Event()
        self.peak: dict[int, dict[str, float]] = {}
        self.store_bytes = 0
        self.store_objects = 0
        self.samples = 0

    def sample(self) -> None:
        for proc in ray_workers():
            try:
                mem = proc.memory_full_info()
            except psutil.Error:
                continue
            peak = self.peak.setdefault(proc.pid, {"rss": 0, "uss": 0, "pss": 0})
            for key in peak:
                peak[key] = max(peak[key], getattr(mem, key))
        stats = self.memory_reply(self.state, timeout_seconds=10).store_stats
        if stats.object_store_bytes_used >= self.store_bytes:
            self.store_bytes = stats.object_store_bytes_used
            self.store_objects = stats.num_local_objects
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def finish(self) -> Report:
        self.stop_event.set()
        self.join()
        return {
            "worker_peaks_mb": {
                str(pid): {k: v / MB for k, v in p.items()} for pid, p in self.peak.items()
            },
            "object_store_peak_mb": self.store_bytes / MB,
            "object_store_objects_at_peak": self.store_objects,
            "samples": self.samples,
        }


def _warm_worker(frame: pd.DataFrame, sets: list[dict[str, Any]], settings: Any) -> int:
    """Import n1v1 and load the compiled kernels in a worker, holding its CPU long enough that
    each of the cluster's workers gets one of these tasks."""
    evaluate_on_symbol("WARM", frame, SmaCross, sets, settings)
    time.sleep(1.0)
    return os.getpid()


def warm_up(workers: int, frame: pd.DataFrame, sets: list[dict[str, Any]]) -> float:
    import ray

    t0 = time.perf_counter()
    remote = ray.remote(num_cpus=1)(_warm_worker)
    pids = ray.get([remote.remote(frame.iloc[:5_000], sets[:2], SETTINGS) for _ in range(workers)])
    if len(set(pids)) != workers:
        raise RuntimeError(f"warm-up reached {len(set(pids))} worker(s), expected {workers}")
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- measured runs


def max_windows(sets: list[dict[str, Any]], chunk_size: int) -> int:
    """Distinct SMA windows in the largest chunk: run_sweep caches each one (8 B per bar) for
    the whole task, so this bounds a worker's working memory."""
    return max(
        len({w for p in sets[i : i + chunk_size] for w in (p["fast"], p["slow"])})
        for i in range(0, len(sets), chunk_size)
    )


def same_rows(got: pd.DataFrame, want: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True))
    except AssertionError:
        return False
    return True


def ray_sweep(
    workers: int,
    frames: Mapping[str, pd.DataFrame],
    sets: list[dict[str, Any]],
    reference: pd.DataFrame,
    evals: int,
    probes: bool,
) -> Report:
    """One cluster of `workers` CPUs: warm it, time one RayEvaluator call, sample memory."""
    import ray

    ensure_ray(num_cpus=workers)
    try:
        warm_s = warm_up(workers, next(iter(frames.values())), sets)
        idle = {p.pid: p.memory_full_info().uss / MB for p in ray_workers()}
        evaluator = RayEvaluator()
        sampler = Sampler()
        sampler.sample()  # the store before the sweep: nothing of ours yet
        base_store = sampler.store_bytes / MB
        sampler.store_bytes = 0
        cpu0 = worker_cpu_seconds(ray_workers())
        sampler.start()
        run, rows = timed(lambda: evaluator(frames, SmaCross, sets, SETTINGS))
        memory = sampler.finish()
        cpu1 = worker_cpu_seconds(ray_workers())
        worker_cpu = sum(cpu1[pid] - cpu0.get(pid, 0.0) for pid in cpu1)
        stats = evaluator.stats
        out: Report = {
            "workers": workers,
            "load_after_run": os.getloadavg()[0],  # includes our own workers
            "warm_up_s": warm_s,
            **run,
            "rate": evals / run["wall_s"],
            "worker_cpu_s": worker_cpu,
            "rate_per_worker_cpu_s": evals / worker_cpu if worker_cpu > 0 else float("nan"),
            "tasks": stats.submitted_chunks,
            "chunk_size": stats.chunk_size,
            "frames_put": stats.frames_put,
            "max_windows_per_chunk": max_windows(sets, stats.chunk_size),
            "sma_cache_mb": max_windows(sets, stats.chunk_size)
            * max(len(f) for f in frames.values())
            * 8
            / MB,
            "rows_equal_local": same_rows(rows, reference),
            "worker_uss_idle_mb": idle,
            "object_store_before_mb": base_store,
            **memory,
        }
        if probes:
            out["probes"] = driver_probes(next(iter(frames.values())))
        return out
    finally:
        ray.shutdown()


class DriverPeak(threading.Thread):
    """Peak RSS of this process above its level at start, polled every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def finish(self) -> int:
        self.stop_event.set()
        self.join()
        return self.peak - self.base


def probe_call(
    bars: pd.DataFrame,
    sets: list[dict[str, Any]],
    chunk_size: int,
    checkpoint: Path | None = None,
    max_in_flight: int | None = None,
) -> Report:
    """One RayEvaluator call on tiny work; `after_last_chunk_s` is the time from the last
    chunk's arrival to the call's return (the rows' assembly, in the driver alone)."""
    last: list[float] = []

    def on_chunk(done: int, total: int) -> None:
        if done == total:
            last.append(time.perf_counter())

    evaluator = RayEvaluator(chunk_size, max_in_flight, on_chunk, checkpoint)
    peak = DriverPeak()
    peak.start()
    run, rows = timed(lambda: evaluator({"P": bars}, SmaCross, sets, SETTINGS))
    returned = time.perf_counter()
    run["driver_peak_growth_bytes"] = peak.finish()
    run["after_last_chunk_s"] = returned - last[-1]
    run["n_tasks"], run["n_rows"], run["rows"] = evaluator.stats.submitted_chunks, len(rows), rows
    if checkpoint is not None:
        files = list((checkpoint / "chunks").glob("*.parquet"))
        run["checkpoint_files"] = len(files)
        run["checkpoint_bytes"] = sum(f.stat().st_size for f in files)
    return run


def driver_probes(frame: pd.DataFrame) -> Report:
    """What the driver pays per task and per result row, on work so small it hardly counts:
    many one-set tasks, then few tasks of many sets; the two driver-CPU totals are solved for
    a cost per task and a cost per row (cpu = tasks * per_task + rows * per_row)."""
    import gc
    import tempfile

    bars = frame.iloc[:1_000]
    sets = random_sets(SmaCross, 40_000, {"fast": "2:60", "slow": "3:240"}, seed=0).sets
    probes = {}
    with tempfile.TemporaryDirectory(prefix="n1v1-bench-ckpt-") as tmp:
        for name, n_sets, chunk_size, checkpoint, in_flight in (
            ("many_tasks", 600, 1, None, None),
            ("many_rows", len(sets), 2_000, None, None),
            ("many_tasks_checkpoint", 600, 1, Path(tmp, "a"), None),
            ("many_rows_checkpoint", len(sets), 2_000, Path(tmp, "b"), None),
            ("many_tasks_1024_in_flight", 2_000, 1, None, 1_024),
        ):
            gc.collect()
            probes[name] = probe_call(bars, sets[:n_sets], chunk_size, checkpoint, in_flight)
    rows = probes["many_rows"]["rows"]
    for probe in probes.values():
        probe.pop("rows")

    def solve(many: Report, big: Report) -> tuple[float, float]:
        """(driver CPU per task, per row) from cpu = tasks * per_task + rows * per_row."""
        (t1, r1, c1), (t2, r2, c2) = (
            (p["n_tasks"], p["n_rows"], p["driver_cpu_s"]) for p in (many, big)
        )
        per_row = (c2 - c1 * t2 / t1) / (r2 - r1 * t2 / t1)
        return (c1 - r1 * per_row) / t1, per_row

    per_task, per_row = solve(probes["many_tasks"], probes["many_rows"])
    ck_task, ck_row = solve(probes["many_tasks_checkpoint"], probes["many_rows_checkpoint"])
    ck_rows = probes["many_rows_checkpoint"]
    wide = probes["many_tasks_1024_in_flight"]
    wide_task = (wide["driver_cpu_s"] - wide["n_rows"] * per_row) / wide["n_tasks"]
    chunk = rows.iloc[:1_000]
    many = probes["many_tasks"]
    return {
        **probes,
        "many_tasks": {**many, "tasks_per_s": many["n_tasks"] / many["wall_s"]},
        "bars": len(bars),
        "driver_cpu_ms_per_task": 1e3 * per_task,
        "driver_cpu_us_per_row": 1e6 * per_row,
        "driver_cpu_ms_per_task_1024_in_flight": 1e3 * wide_task,
        "checkpoint_driver_cpu_ms_per_task": 1e3 * ck_task,
        "checkpoint_driver_cpu_us_per_row": 1e6 * ck_row,
        "checkpoint_bytes_per_row": ck_rows["checkpoint_bytes"] / ck_rows["n_rows"],
        "driver_peak_growth_bytes_per_row": probes["many_rows"]["driver_peak_growth_bytes"]
        / len(rows),
        "bytes_per_row_in_memory": rows.memory_usage(deep=True).sum() / len(rows),
        "bytes_per_row_pickled": len(pickle.dumps(chunk, protocol=5)) / len(chunk),
        "columns": len(rows.columns),
    }


def vectorbt_sweep(vframes: Mapping[str, pd.DataFrame], sets: list[dict[str, Any]]) -> Report:
    first = next(iter(vframes.values()))
    bench_backtest.vectorbt_sweep(first.iloc[:1000], sets[:2], 2)  # compile before timing

    def run() -> None:
        for frame in vframes.values():
            bench_backtest.vectorbt_sweep(frame, sets, 25)

    report, _ = timed(run)
    return report


# --------------------------------------------------------------------------- main


def frame_bytes(frame: pd.DataFrame) -> int:
    return int(frame.memory_usage(index=True, deep=True).sum())


def fmt_workers(r: Report) -> str:
    peaks = sorted(r["worker_peaks_mb"].values(), key=lambda p: -p["uss"])
    return "; ".join(
        f"RSS {p['rss']:,.0f} / USS {p['uss']:,.0f} / PSS {p['pss']:,.0f} MB" for p in peaks
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bars", type=int, default=1_000_000, help="1-minute bars per symbol")
    ap.add_argument("--symbols", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="1-worker + 2-worker runs, alternated")
    ap.add_argument("--max-load", type=float, default=0.8, help="wait for a quieter machine")
    ap.add_argument("--max-wait", type=float, default=900, help="seconds to wait at most")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    a = ap.parse_args()
    if a.quick:
        a.bars, a.rounds, a.max_wait = 50_000, 1, 0
    info = bench_machine.machine_info(
        *("numpy", "pandas", "numba", "ray", "vectorbt", "psutil"),
        extra={"NUMBA_NUM_THREADS": os.environ["NUMBA_NUM_THREADS"]},
    )
    print("## machine\n" + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- command: python bench/sweep.py {' '.join(sys.argv[1:])}".rstrip())
    load = wait_for_quiet(a.max_load, a.max_wait)
    report: Report = {"machine": info, "load": load, "args": {**vars(a), "json": str(a.json)}}

    found = generate_bars(a.bars, symbols=a.symbols, timeframe="1m", seed=0)
    frames = found if isinstance(found, dict) else {"SYN": found}
    sets = grid_sets(SmaCross, QUICK_GRID if a.quick else GRID).sets
    assert len(sets) == len(bench_backtest.grid(a.quick)), "grid differs from bench/backtest.py"
    evals = len(sets) * sum(len(f) for f in frames.values())
    data_mb = sum(frame_bytes(f) for f in frames.values()) / MB
    print(f"\n## workload: {len(sets)} sma_cross sets x {len(frames)} symbols x {a.bars:,} bars "
          f"= {evals:,} bar-evaluations; bars {data_mb:,.1f} MB in memory "
          f"({data_mb / len(frames):,.1f} MB per symbol)")  # fmt: skip
    report["workload"] = {"sets": len(sets), "symbols": len(frames), "bars": a.bars,
                          "bar_evaluations": evals, "data_mb": data_mb}  # fmt: skip

    local_evaluator({"W": frames[next(iter(frames))].iloc[:1000]}, SmaCross, sets[:2], SETTINGS)
    local, reference = timed(lambda: local_evaluator(frames, SmaCross, sets, SETTINGS))
    local["rate"] = evals / local["wall_s"]
    local["per_core"] = local["rate"] / max(1.0, local["driver_cpu_s"] / local["wall_s"])
    print(f"in-process local_evaluator: {local['wall_s']:.2f} s wall, {local['driver_cpu_s']:.2f} s"
          f" cpu -> {local['per_core']:,.0f} bar-evals/s per core "
          f"(machine busy {local['machine_busy']:.0%})", flush=True)  # fmt: skip
    report["in_process"] = local

    runs: list[Report] = []
    for rnd in range(a.rounds):
        for workers in (1, 2):
            r = ray_sweep(workers, frames, sets, reference, evals, rnd == 0 and workers == 2)
            r["round"] = rnd + 1
            runs.append(r)
            print(f"Ray {workers} worker(s), round {rnd + 1}: {r['wall_s']:.2f} s -> "
                  f"{r['rate']:,.0f} bar-evals/s; {r['tasks']} tasks of {r['chunk_size']} sets; "
                  f"worker CPU {r['worker_cpu_s']:.2f} s -> {r['rate_per_worker_cpu_s']:,.0f} "
                  f"per worker-CPU-s; driver CPU {r['driver_cpu_s']:.2f} s; machine busy "
                  f"{r['machine_busy']:.0%}; load {r['load_after_run']:.2f}; rows equal "
                  f"local_evaluator: {r['rows_equal_local']}", flush=True)  # fmt: skip
            print(f"  object store peak {r['object_store_peak_mb']:,.1f} MB in "
                  f"{r['object_store_objects_at_peak']} objects (before: "
                  f"{r['object_store_before_mb']:.1f} MB; frames put {r['frames_put']}, bars "
                  f"{data_mb:,.1f} MB -> {r['object_store_peak_mb'] / data_mb:.2f}x the bars for "
                  f"{r['tasks']} tasks); peak per worker: {fmt_workers(r)}; idle USS after "
                  f"warm-up {', '.join(f'{v:,.0f}' for v in r['worker_uss_idle_mb'].values())} "
                  f"MB; the largest chunk caches {r['max_windows_per_chunk']} SMA windows = "
                  f"{r['sma_cache_mb']:,.0f} MB", flush=True)  # fmt: skip
    report["ray"] = runs

    probes = next(r["probes"] for r in runs if "probes" in r)
    pm, pb, wide = probes["many_tasks"], probes["many_rows"], probes["many_tasks_1024_in_flight"]
    print(f"\n## driver probes (2 workers, {probes['bars']:,} bars per task)\n"
          f"- {pm['n_tasks']} tasks of 1 set: {pm['wall_s']:.2f} s = {pm['tasks_per_s']:,.0f} "
          f"tasks/s; driver CPU {pm['driver_cpu_s']:.2f} s, {pm['after_last_chunk_s']:.2f} s of "
          f"the call after the last chunk arrived\n"
          f"- {pb['n_tasks']} tasks of {pb['n_rows'] // pb['n_tasks']:,} sets ({pb['n_rows']:,} "
          f"rows): {pb['wall_s']:.2f} s; driver CPU {pb['driver_cpu_s']:.2f} s, "
          f"{pb['after_last_chunk_s']:.2f} s after the last chunk; driver peak RSS +"
          f"{pb['driver_peak_growth_bytes'] / MB:,.1f} MB\n"
          f"- solved: driver CPU {probes['driver_cpu_ms_per_task']:.2f} ms per task + "
          f"{probes['driver_cpu_us_per_row']:.1f} us per row; driver peak RSS growth "
          f"{probes['driver_peak_growth_bytes_per_row']:,.0f} B per row; a row has "
          f"{probes['columns']} columns, {probes['bytes_per_row_in_memory']:.0f} B in memory, "
          f"{probes['bytes_per_row_pickled']:.0f} B pickled\n"
          f"- with checkpoint=DIR (same two calls): driver CPU "
          f"{probes['checkpoint_driver_cpu_ms_per_task']:.2f} ms per task + "
          f"{probes['checkpoint_driver_cpu_us_per_row']:.1f} us per row; Parquet "
          f"{probes['checkpoint_bytes_per_row']:.0f} B per row on disk\n"
          f"- {wide['n_tasks']:,} tasks of 1 set with max_in_flight=1,024 (default here: 4): "
          f"{wide['wall_s']:.2f} s; driver CPU {wide['driver_cpu_s']:.2f} s -> "
          f"{probes['driver_cpu_ms_per_task_1024_in_flight']:.2f} ms per task",
          flush=True)  # fmt: skip
    report["probes"] = probes

    vframes = {s: f.tz_localize(None) for s, f in frames.items()}  # see bench/backtest.py
    vbt = vectorbt_sweep(vframes, sets)
    vbt["per_core"] = evals / vbt["wall_s"] / max(1.0, vbt["driver_cpu_s"] / vbt["wall_s"])
    print(f"vectorbt (one process, chunks of 25 columns): {vbt['wall_s']:.2f} s wall, "
          f"{vbt['driver_cpu_s']:.2f} s cpu -> {vbt['per_core']:,.0f} bar-evals/s per core "
          f"(machine busy {vbt['machine_busy']:.0%})", flush=True)  # fmt: skip
    report["vectorbt"] = vbt

    best = {w: max((r for r in runs if r["workers"] == w), key=lambda r: r["rate"]) for w in (1, 2)}
    r1, r2 = best[1]["rate"], best[2]["rate"]
    speedup, per_core = r2 / r1, min(r1, r2 / 2)
    vs_vbt = per_core / vbt["per_core"]
    per_round = [b["rate"] / a_["rate"] for a_, b in zip(runs[0::2], runs[1::2], strict=True)]
    rows_ok = all(r["rows_equal_local"] for r in runs)
    store_x = max(r["object_store_peak_mb"] for r in runs) / data_mb
    summary = {
        "rate_1_worker": r1, "rate_2_workers": r2, "speedup": speedup,
        "efficiency": speedup / 2, "speedup_per_round": per_round,
        "ours_per_core": per_core, "vectorbt_per_core": vbt["per_core"],
        "ratio_per_core": vs_vbt, "object_store_peak_over_bars": store_x,
        "rows_equal_local": rows_ok,
        "target_scaling": "PASS" if speedup >= 1.8 else "FAIL",
        "target_vectorbt": "PASS" if vs_vbt >= 3.0 else "FAIL",
    }  # fmt: skip
    report["summary"] = summary
    print("\n## summary (best round of each; rates in bar-evaluations/s)")
    print("| what | figure |\n|---|---|")
    lines = [
        ("in-process local_evaluator, per core", f"{local['per_core']:,.0f}"),
        ("Ray, 1 worker", f"{r1:,.0f}"),
        ("Ray, 2 workers", f"{r2:,.0f}"),
        ("speedup 1 -> 2 workers (efficiency = speedup / 2)",
         f"{speedup:.2f}x ({speedup / 2:.0%}); per round "
         + ", ".join(f"{x:.2f}x" for x in per_round)),
        ("ours per core (lower of 1-worker, 2-worker / 2)", f"{per_core:,.0f}"),
        ("vectorbt per core (one process)", f"{vbt['per_core']:,.0f}"),
        ("ours / vectorbt per core", f"{vs_vbt:.1f}x"),
        ("object store peak / bars in memory", f"{store_x:.2f}x"),
        ("Ray rows identical to local_evaluator (every run)", "yes" if rows_ok else "NO"),
    ]  # fmt: skip
    for what, fig in lines:
        print(f"| {what} | {fig} |")
    print(f"\ntarget >= 1.8x from 1 to 2 workers: {summary['target_scaling']} ({speedup:.2f}x)")
    print(f"target >= 3x vectorbt per core: {summary['target_vectorbt']} ({vs_vbt:.1f}x)")
    if a.json:
        a.json.write_text(json.dumps(report, indent=1, default=str))
        print(f"(all figures: {a.json})")
    if not rows_ok:
        sys.exit("Ray rows differ from local_evaluator's: the figures above are not comparable")


if __name__ == "__main__":
    main()
