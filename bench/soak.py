"""Soak: the paper-trading Serve app under moderate load for a long time, sampled every minute.

    python bench/soak.py [--minutes 30] [--users 6] [--plot PATH] [--json PATH]

The whole app (proxy -> Gateway -> Engine / Model replicas, SQLite store) runs on a private local
Ray (bench/load.py's `serve_app` and `load_app_args`: free ports, the bundled minute bars replayed
at 5 bars/s and then synthetic ones), while the Locust mix of bench/locustfile.py (dashboards
reading, manual orders, config changes, predictions, the odd backtest) runs against it as a
subprocess the whole time. A probe of its own asks
`GET /api/v1/status` ten times a second, so the latency series does not depend on the mix.

Every minute it records: resident memory (RSS) of every process of that Ray by role, open file
descriptors, the store's size on disk (the database file and its WAL), the engine's step, and the
probe's p50/p99 over that minute. After a warm-up (--warmup-minutes, 5) it judges flatness:

- memory: total RSS at the end within 10 % of the first sample after the warm-up;
- file descriptors: at the end no more than 20 above that first sample;
- store: the journal keeps every bar, so it grows; it must grow in proportion to the steps (bytes
  per step of the second half within 25 % of the first half), not faster;
- latency: the status probe's p99 over the last third within 1.5x of the first third (after the
  warm-up) and no failed probe.

A soak is a benchmark, not a test (issue 12): BENCHMARKS.md keeps its output and the plot.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api import machine_info, register_tiny  # noqa: E402

RSS_TOLERANCE = 0.10
FD_TOLERANCE = 20
STORE_RATE_TOLERANCE = 0.25
P99_TOLERANCE = 1.5


def process_role(cmdline: list[str]) -> str:
    """A short role for a process of the private Ray: replica, proxy, controller, gcs, ..."""
    if not cmdline:
        return "other"
    first = cmdline[0]
    if first.startswith("ray::"):
        name = first.removeprefix("ray::")
        if name.startswith("ServeReplica:"):
            return "replica " + name.split(":")[-1].split(".")[0]
        return name.split(".", 1)[0]
    for word in cmdline[:3]:
        base = Path(word).name
        if base in ("gcs_server", "raylet"):
            return base
        if base.endswith(".py"):
            return base.removesuffix(".py")
    return Path(first).name


def sample_processes() -> dict[str, Any]:
    """RSS (MiB) by role and open file descriptors of every process this one started."""
    import psutil

    rss: Counter[str] = Counter()
    fds = 0
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            with proc.oneshot():
                role = "driver" if proc.pid == me.pid else process_role(proc.cmdline())
                rss[role] += proc.memory_info().rss / 2**20
                fds += proc.num_fds()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"rss_mib": dict(rss), "rss_total_mib": sum(rss.values()), "fds": fds}


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


class StatusProbe(threading.Thread):
    """GET /api/v1/status at a steady rate; latencies (s) and failures by minute."""

    def __init__(self, base: str, token: str, rate_per_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.period = f"{base}/api/v1/status", token, 1.0 / rate_per_s
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()
        self.step: int | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        import requests

        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {self.token}"
        while not self.stopping.is_set():
            began = time.perf_counter()
            try:
                r = http.get(self.url, timeout=10)
                took = time.perf_counter() - began
                with self.lock:
                    if r.status_code == 200:
                        self.latencies.append(took)
                        self.step = r.json().get("step", self.step)
                    else:
                        self.failures[str(r.status_code)] += 1
            except requests.RequestException as exc:
                with self.lock:
                    self.failures[type(exc).__name__] += 1
            self.stopping.wait(max(0.0, self.period - (time.perf_counter() - began)))

    def take(self) -> tuple[list[float], Counter[str], int | None]:
        with self.lock:
            out = (self.latencies, self.failures, self.step)
            self.latencies, self.failures = [], Counter()
        return out


def judge(samples: list[dict[str, Any]], warmup_minutes: float) -> dict[str, Any]:
    """The flatness verdicts over the samples after the warm-up (module docstring)."""
    steady = [s for s in samples if s["minute"] >= warmup_minutes]
    if len(steady) < 3:
        raise SystemExit(f"only {len(steady)} samples after the warm-up: run longer")
    first, last = steady[0], steady[-1]
    rss_growth = last["rss_total_mib"] / first["rss_total_mib"] - 1.0
    half = len(steady) // 2

    def bytes_per_step(a: dict[str, Any], b: dict[str, Any]) -> float:
        return (b["store_bytes"] - a["store_bytes"]) / max(1, b["step"] - a["step"])

    rate_first = bytes_per_step(steady[0], steady[half])
    rate_second = bytes_per_step(steady[half], steady[-1])
    third = max(1, len(steady) // 3)
    p99_first = float(np.median([s["p99_ms"] for s in steady[:third]]))
    p99_last = float(np.median([s["p99_ms"] for s in steady[-third:]]))
    failed = sum(sum(s["probe_failures"].values()) for s in samples)
    checks = {
        "rss": (
            abs(rss_growth) <= RSS_TOLERANCE,
            f"{rss_growth:+.1%} (limit +-{RSS_TOLERANCE:.0%})",
        ),
        "fds": (
            last["fds"] - first["fds"] <= FD_TOLERANCE,
            f"{first['fds']} -> {last['fds']} (limit +{FD_TOLERANCE})",
        ),
        "store": (
            rate_first > 0 and abs(rate_second / rate_first - 1.0) <= STORE_RATE_TOLERANCE,
            f"{rate_first:,.0f} then {rate_second:,.0f} bytes per step "
            f"(limit +-{STORE_RATE_TOLERANCE:.0%})",
        ),
        "p99": (
            p99_last <= P99_TOLERANCE * p99_first and failed == 0,
            f"median per-minute p99 {p99_first:.1f} ms first third, {p99_last:.1f} ms last "
            f"third (limit x{P99_TOLERANCE:g}); failed probes {failed}",
        ),
    }
    return {name: {"pass": ok, "detail": detail} for name, (ok, detail) in checks.items()}


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["minute"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    roles = sorted({r for s in samples for r in s["rss_mib"]})
    for role in roles:
        axes[0].plot(minutes, [s["rss_mib"].get(role, np.nan) for s in samples], label=role)
    axes[0].plot(minutes, [s["rss_total_mib"] for s in samples], "k--", label="total")
    axes[0].set_ylabel("RSS MiB")
    axes[0].legend(fontsize=6, ncol=3)
    axes[1].plot(minutes, [s["fds"] for s in samples])
    axes[1].set_ylabel("open fds")
    axes[2].plot(minutes, [s["store_bytes"] / 2**20 for s in samples])
    axes[2].set_ylabel("store MiB")
    axes[3].plot(minutes, [s["p50_ms"] for s in samples], label="p50")
    axes[3].plot(minutes, [s["p99_ms"] for s in samples], label="p99")
    axes[3].set_ylabel("status ms")
    axes[3].set_xlabel("minutes")
    axes[3].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup-minutes", type=float, default=5.0)
    ap.add_argument("--sample-s", type=float, default=60.0)
    ap.add_argument("--users", type=int, default=6, help="Locust users (moderate load)")
    ap.add_argument("--plot", type=Path, default=Path("bench/figures/soak.png"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()

    from load import load_app_args, route_table, serve_app, start_locust  # bench/load.py

    info = machine_info()
    print(f"# soak ({time.strftime('%Y-%m-%d %H:%M')} UTC), {a.minutes:g} minutes")
    print(", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    token = "soak-" + os.urandom(16).hex()
    samples: list[dict[str, Any]] = []
    load_result = None
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        register_tiny(tmp / "models")
        args = load_app_args(tmp)  # the load benchmark's app: paced replay, then synthetic bars
        db = Path(args.store_url.removeprefix("sqlite:///"))
        with serve_app(args, token) as base:
            load = start_locust(base, token, a.minutes * 60 + 30, a.users, tmp / "locust")
            probe = StatusProbe(base, token)
            probe.start()
            try:
                started = time.monotonic()
                end = started + a.minutes * 60
                print("| minute | step | RSS MiB | fds | store MiB | p50 ms | p99 ms | failed |")
                print("|---|---|---|---|---|---|---|---|", flush=True)
                while time.monotonic() < end:
                    time.sleep(a.sample_s)
                    latencies, failures, step = probe.take()
                    ms = np.asarray(latencies) * 1e3
                    sample = {
                        "minute": round((time.monotonic() - started) / 60.0, 2),
                        "step": step or 0,
                        **sample_processes(),
                        "store_bytes": store_bytes(db),
                        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
                        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan"),
                        "probes": len(ms),
                        "probe_failures": dict(failures),
                    }
                    samples.append(sample)
                    print(
                        f"| {sample['minute']:.1f} | {sample['step']:,} | "
                        f"{sample['rss_total_mib']:,.0f} | {sample['fds']} | "
                        f"{sample['store_bytes'] / 2**20:,.1f} | {sample['p50_ms']:.1f} | "
                        f"{sample['p99_ms']:.1f} | {sum(failures.values())} |",
                        flush=True,
                    )
                load_result = load.wait()
            finally:
                probe.stopping.set()
                load.stop()
    verdicts = judge(samples, a.warmup_minutes)
    print()
    for name, v in verdicts.items():
        print(f"- {name}: {'PASS' if v['pass'] else 'FAIL'}: {v['detail']}")
    by_role = sorted(samples[-1]["rss_mib"].items(), key=lambda kv: -kv[1])
    print("RSS by role at the end (MiB): " + ", ".join(f"{k} {v:,.0f}" for k, v in by_role))
    if load_result is not None:
        print(f"\nthe Locust mix over the whole soak ({a.users} users):")
        print(route_table(load_result.routes))
    plot(samples, a.plot, f"N1V1 soak, {a.minutes:g} min, {a.users} Locust users, {info['cpu']}")
    print(f"plot: {a.plot}")
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "samples": samples, "verdicts": verdicts}))
    if not all(v["pass"] for v in verdicts.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
