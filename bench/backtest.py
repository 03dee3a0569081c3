"""Backtest speed of N1V1's fast path against backtrader and vectorbt, measured in one run.

    python bench/backtest.py [--bars 1000000] [--peer-bars 200000] [--quick] [--cli-only]

Every figure is measured here, on this machine, on the same seeded synthetic 1-minute bars, with
the same strategy (sma_cross fast=10 slow=30, long only), the same costs (0.1 % fee, 1 bps
slippage) and a 2 % stop-loss. Ratios are ours / peer. Results and caveats: BENCHMARKS.md.

The whole command is timed too: `n1v1 backtest --data bars.parquet ... --json out.json
--no-progress` in a fresh process on --bars and on twice as many bars (best of --cli-repeat runs
each); the marginal rate is --bars / (t(2n) - t(n)), what each further million bars costs once
the interpreter, the imports and the Numba cache are paid for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")  # per-core figures: no numba thread pool anywhere

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import machine as bench_machine  # noqa: E402

from n1v1.backtest import fast, fast_kernel  # noqa: E402
from n1v1.backtest.fast import simulate  # noqa: E402
from n1v1.backtest.metrics import compute_metrics  # noqa: E402
from n1v1.backtest.runner import fast_config, fast_trades, run_backtest  # noqa: E402
from n1v1.backtest.sweep import run_sweep  # noqa: E402
from n1v1.config import Settings  # noqa: E402
from n1v1.data.synthetic import generate_bars  # noqa: E402
from n1v1.domain import Symbol  # noqa: E402
from n1v1.strategies.trend import SmaCross  # noqa: E402

FAST_W, SLOW_W, FEE, BPS, STOP, CASH = 10, 30, 0.001, 1.0, 0.02, 10_000.0
SETTINGS = Settings.model_validate(
    {
        "backtest": {"cash": CASH},
        "execution": {"taker_fee": FEE, "maker_fee": FEE, "slippage_bps": BPS},
        "risk": {"stop_loss_pct": STOP},
    }
)
CONFIG = fast_config(SETTINGS, "SYN")


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[float, object]:
    """Best wall time of `repeat` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_and_wall(fn: Callable[[], object]) -> tuple[float, float, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - t0, out


def machine_info() -> dict[str, str]:
    return bench_machine.machine_info(
        "numpy",
        "pandas",
        "numba",
        "vectorbt",
        "backtrader",
        extra={
            "NUMBA_NUM_THREADS": os.environ["NUMBA_NUM_THREADS"],
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        },
    )


# --------------------------------------------------------------------------- ours


def ours_pipeline(bars: pd.DataFrame) -> dict[str, float]:
    """`run_backtest`, exactly what `n1v1 backtest` runs: targets, simulation, trades, metrics."""
    result = run_backtest(bars, SmaCross({"fast": FAST_W, "slow": SLOW_W}), SETTINGS, engine="fast")
    return {"n_trades": result.metrics["n_trades"], "final_equity": result.metrics["final_equity"]}


def pipeline_stages(bars: pd.DataFrame) -> dict[str, float]:
    """Wall time of each step of the pipeline above, to show where the time goes."""
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    targets = SmaCross({"fast": FAST_W, "slow": SLOW_W}).target_positions(bars)
    stages["targets"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = simulate(*(bars[c].to_numpy() for c in ("open", "high", "low", "close")), targets, CONFIG)
    stages["simulate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    trades = fast_trades(res, bars.index, Symbol("SYN"))
    stages["trade objects"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    compute_metrics(
        pd.Series(res.equity, index=bars.index),
        trades,
        CASH,
        fills_notional=res.traded_notional,
        fees_paid=res.fees_paid,
        exposure_bars=res.exposure_bars,
    )
    stages["compute_metrics"] = time.perf_counter() - t0
    return stages


def ours_kernel_seconds(bars: pd.DataFrame, repeat: int) -> float:
    targets = SmaCross({"fast": FAST_W, "slow": SLOW_W}).target_positions(bars)
    cols = fast.ohlc_arrays(*(bars[c].to_numpy() for c in ("open", "high", "low", "close")))
    volume = fast.volume_array(None, len(bars), CONFIG)  # no participation cap: not read
    args = (*cols, volume, targets, *CONFIG.kernel_args(), 0.0, True)
    return timed(lambda: fast_kernel.run_kernel(*args), repeat)[0]


RSS_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
def hwm_mb():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM'):
            return int(line.split()[1]) / 1024
import bench.backtest as b
base = hwm_mb()
bars = b.generate_bars({n}, timeframe='1m', seed=0)
after_data = hwm_mb()
out = b.ours_pipeline(bars)
print(json.dumps({{'after_imports_mb': base, 'after_data_mb': after_data, 'peak_mb': hwm_mb(),
                  **out}}))
"""


def ours_peak_rss(n: int) -> dict[str, float]:
    """Run the full pipeline on n bars in a fresh process and report its peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    code = RSS_CHILD.format(root=str(ROOT), n=n)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["rusage_children_maxrss_mb"] = after / 1024 if after > before else float("nan")
    return report


# --------------------------------------------------------------------------- the whole CLI


def cli_command(data: Path, out: Path) -> list[str]:
    """`n1v1 backtest` with the benchmark's strategy and costs, writing the JSON result."""
    return [
        sys.executable, "-m", "n1v1", "backtest", "--data", str(data),
        "--strategy", "sma_cross", "--param", f"fast={FAST_W}", "--param", f"slow={SLOW_W}",
        "--cash", str(CASH), "--fee", str(FEE), "--slippage-bps", str(BPS),
        "--stop-loss", str(STOP), "--json", str(out), "--no-progress",
    ]  # fmt: skip


def cli_seconds(data: Path, out: Path, repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time (user + system) of `repeat` fresh `n1v1 backtest ...
    --json` processes. On a shared machine the wall time also holds the waits for a core; the
    CPU time is what the command itself spent."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    wall = cpu = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cli_command(data, out), env=env, check=True, capture_output=True)
        wall = min(wall, time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu = min(cpu, used)
    return wall, cpu


def cli_rates(
    bars: pd.DataFrame, n: int, repeat: int, workdir: Path, fmt: str = "parquet"
) -> dict[str, float]:
    """The whole command on the first n and 2n bars (Parquet or CSV files): seconds and bars/s."""
    small, large = workdir / f"bars_{n}.{fmt}", workdir / f"bars_{2 * n}.{fmt}"
    for path, rows in ((small, n), (large, 2 * n)):
        if fmt == "csv":
            bars.iloc[:rows].to_csv(path)
        else:
            bars.iloc[:rows].to_parquet(path)
    out = workdir / "result.json"
    cli_seconds(small, out, 1)  # warm the page cache and the Numba cache
    t1, c1 = cli_seconds(small, out, repeat)
    t2, c2 = cli_seconds(large, out, repeat)
    result = json.loads(out.read_text())
    return {
        "t1": t1,
        "t2": t2,
        "c1": c1,
        "c2": c2,
        "rate1": n / t1,
        "rate2": 2 * n / t2,
        # no marginal rate when the larger file was not slower: the machine was too busy to tell
        "marginal": n / (t2 - t1) if t2 > t1 else float("nan"),
        "marginal_cpu": n / (c2 - c1) if c2 > c1 else float("nan"),
        "json_mb": out.stat().st_size / 1e6,
        "equity_points": len(result["equity"]),
        "trades": len(result["trades"]),
    }


# --------------------------------------------------------------------------- backtrader


def backtrader_run(bars: pd.DataFrame) -> dict[str, float]:
    import backtrader as bt

    slip = BPS / 1e4

    class SmaCrossStop(bt.Strategy):
        """Our rules in backtrader terms, with cheat-on-open so an order decided at a close fills
        at the next open and can be cut to the cash available there (backtrader would otherwise
        reject it as Margin instead of cutting it)."""

        def __init__(self) -> None:
            self.fast = bt.ind.SMA(self.data.close, period=FAST_W)
            self.slow = bt.ind.SMA(self.data.close, period=SLOW_W)
            self.stop_order = None
            self.blocked = False  # no re-entry after a stop until the cross turns (like ours)
            self.value_at_close = CASH
            self.closed = 0

        def next(self) -> None:
            self.value_at_close = self.broker.getvalue()  # E_t for sizing at the next open

        def next_open(self) -> None:
            if len(self) <= SLOW_W:
                return
            # at next_open the data has moved to the new bar but the indicators have not: [0] is
            # still their value at the previous close, where our target is read
            want = self.fast[0] > self.slow[0]
            if not want:
                self.blocked = False
            if self.position.size > 0 and not want:
                if self.stop_order is not None:
                    self.cancel(self.stop_order)
                    self.stop_order = None
                self.close()
            elif not self.position and want and not self.blocked:
                size = self.value_at_close / (self.data.close[-1] * (1 + FEE + slip))
                price = self.data.open[0] * (1 + slip)
                affordable = self.broker.getcash() / (price * (1 + FEE)) * (1 - 1e-9)  # ulp room
                self.buy(size=min(size, affordable))

        def notify_order(self, order) -> None:
            if order.status != order.Completed:
                return
            if order.isbuy():
                stop = order.executed.price * (1 - STOP)
                self.stop_order = self.sell(
                    exectype=bt.Order.Stop, price=stop, size=order.executed.size
                )
            elif order is self.stop_order:
                self.stop_order = None
                self.blocked = True

        def notify_trade(self, trade) -> None:
            if trade.isclosed:
                self.closed += 1

    cerebro = bt.Cerebro(stdstats=False, cheat_on_open=True)  # no observers: its fastest setup
    cerebro.adddata(bt.feeds.PandasData(dataname=bars.tz_localize(None)))
    cerebro.addstrategy(SmaCrossStop)
    cerebro.broker.setcash(CASH)
    cerebro.broker.set_checksubmit(False)  # its submit check prices at the close, not our open
    cerebro.broker.setcommission(commission=FEE)
    cerebro.broker.set_slippage_perc(slip, slip_open=True, slip_match=True)
    (strat,) = cerebro.run()
    return {"n_trades": strat.closed, "final_equity": cerebro.broker.getvalue()}


# --------------------------------------------------------------------------- vectorbt


def vectorbt_signals(close: pd.Series, fast_w, slow_w):
    """Crossing signals shifted one bar: decided at a close, filled at the next open."""
    import vectorbt as vbt

    fast_ma = vbt.MA.run(close, fast_w, short_name="fast")
    slow_ma = vbt.MA.run(close, slow_w, short_name="slow")
    entries = fast_ma.ma_crossed_above(slow_ma).vbt.fshift(1, fill_value=False)
    exits = fast_ma.ma_crossed_below(slow_ma).vbt.fshift(1, fill_value=False)
    return entries, exits


def vectorbt_portfolio(bars: pd.DataFrame, entries, exits):
    import vectorbt as vbt

    return vbt.Portfolio.from_signals(
        bars["close"],
        entries,
        exits,
        price=bars["open"],  # fill at the open of the bar after the signal (our next_open)
        open=bars["open"],
        high=bars["high"],
        low=bars["low"],
        fees=FEE,
        slippage=BPS / 1e4,
        sl_stop=STOP,
        stop_entry_price="fillprice",  # stop from the fill price, as ours
        stop_exit_price="stopmarket",  # stop price (or the open if gapped) with slippage, as ours
        init_cash=CASH,
        direction="longonly",
        freq="1min",
    )


def vectorbt_pipeline(bars: pd.DataFrame) -> dict[str, float]:
    entries, exits = vectorbt_signals(bars["close"], FAST_W, SLOW_W)
    pf = vectorbt_portfolio(bars, entries, exits)
    pf.sharpe_ratio(), pf.max_drawdown()
    return {"n_trades": int(pf.trades.closed.count()), "final_equity": float(pf.final_value())}


def vectorbt_sweep(bars: pd.DataFrame, sets: list[dict], chunk: int) -> None:
    """The grid in column chunks (all columns at once would need several GB at 10^6 bars)."""
    for i in range(0, len(sets), chunk):
        part = sets[i : i + chunk]
        entries, exits = vectorbt_signals(
            bars["close"], [p["fast"] for p in part], [p["slow"] for p in part]
        )
        pf = vectorbt_portfolio(bars, entries, exits)
        pf.total_return(), pf.sharpe_ratio(), pf.max_drawdown(), pf.trades.count()


# --------------------------------------------------------------------------- main


def grid(quick: bool) -> list[dict[str, int]]:
    fasts, slows = (
        (range(5, 55, 15), range(20, 210, 60)) if quick else (range(5, 55, 5), range(20, 210, 10))
    )
    return [{"fast": f, "slow": s} for f in fasts for s in slows if f < s]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--peer-bars", type=int, default=200_000, help="bars given to backtrader")
    ap.add_argument("--rss-bars", type=int, default=10_000_000)
    ap.add_argument("--sweep-bars", type=int, default=None, help="default: --bars")
    ap.add_argument("--check-bars", type=int, default=20_000, help="bars of the 3-way cross-check")
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run, not a benchmark"
    )
    ap.add_argument("--cli-repeat", type=int, default=3, help="runs per size of the CLI timing")
    ap.add_argument(
        "--cli-only", action="store_true", help="only the whole-command timing and backtrader"
    )
    ap.add_argument(
        "--cli-format", choices=("parquet", "csv"), default="parquet", help="data file format"
    )
    a = ap.parse_args()
    if a.quick:
        a.bars, a.peer_bars, a.rss_bars, a.check_bars = 100_000, 10_000, 1_000_000, 5_000
    n_sweep = a.sweep_bars or a.bars
    rows: list[tuple[str, str, str, str]] = []  # (what, ours, peer, ratio)

    info = machine_info()
    print("## machine\n" + "\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- command: python bench/backtest.py {' '.join(sys.argv[1:])}".rstrip())

    if a.cli_only:
        cli_section(a, rows)
        print_summary(rows)
        return

    # RSS first: the only child process so far, so RUSAGE_CHILDREN is exactly its peak
    rss = ours_peak_rss(a.rss_bars)
    print(f"\n## peak RSS, full pipeline on {a.rss_bars:,} bars (fresh process)\n{rss}")

    bars = generate_bars(a.bars, timeframe="1m", seed=0)
    # vectorbt gets the same bars with a tz-naive index: with pandas 3 it converts a tz-aware index
    # to an object array of Timestamps on every wrap, which alone made it ~50x slower here
    vbars = bars.tz_localize(None)
    n = len(bars)
    ours_pipeline(bars.iloc[:1000])  # load / compile the kernels before timing
    t_pipe, ours = timed(lambda: ours_pipeline(bars), 3)
    t_kernel = ours_kernel_seconds(bars, 5)
    print(f"\n## single backtest, {n:,} bars: ours {ours}")
    print(f"ours full pipeline {t_pipe:.3f} s = {n / t_pipe:,.0f} bars/s")
    print(f"ours kernel alone  {t_kernel:.4f} s = {n / t_kernel:,.0f} bars/s")
    stages = pipeline_stages(bars)
    print("pipeline stages (one more run): "
          + ", ".join(f"{k} {v:.3f} s" for k, v in stages.items()))  # fmt: skip

    t_cold, _ = timed(lambda: vectorbt_pipeline(vbars.iloc[:1000]))
    t_vbt, vbt_out = timed(lambda: vectorbt_pipeline(vbars), 2)
    print(f"vectorbt: first call on 1,000 bars (compiles) {t_cold:.2f} s; warm {n:,} bars "
          f"{t_vbt:.3f} s = {n / t_vbt:,.0f} bars/s; {vbt_out}")  # fmt: skip
    print(
        "(0.1 % fees on ~20k round trips eat the account on 10^6 one-minute bars; the final equity"
        " of both is ~0, so the cross-check below uses a shorter window)"
    )
    rows.append(("single backtest, full pipeline (bars/s)", f"{n / t_pipe:,.0f}",
                 f"vectorbt {n / t_vbt:,.0f}", f"{t_vbt / t_pipe:.1f}x"))  # fmt: skip
    targets = SmaCross({"fast": FAST_W, "slow": SLOW_W}).target_positions(bars)
    cols = [bars[c].to_numpy() for c in ("open", "high", "low", "close")]
    t_sim, _ = timed(lambda: simulate(*cols, targets, CONFIG), 3)
    entries, exits = vectorbt_signals(vbars["close"], FAST_W, SLOW_W)
    t_fs, _ = timed(lambda: vectorbt_portfolio(vbars, entries, exits), 3)
    print(f"simulate() alone {n / t_sim:,.0f} bars/s; vectorbt Portfolio.from_signals() alone "
          f"{n / t_fs:,.0f} bars/s (signals precomputed for both)")  # fmt: skip
    rows.append(("simulate() vs Portfolio.from_signals() alone (bars/s)", f"{n / t_sim:,.0f}",
                 f"vectorbt {n / t_fs:,.0f}", f"{t_fs / t_sim:.1f}x"))  # fmt: skip
    rows.append(("single backtest, kernel alone (bars/s)", f"{n / t_kernel:,.0f}", "", ""))
    peer = bars.iloc[: a.peer_bars]
    t_bt, bt_out = timed(lambda: backtrader_run(peer))
    t_ours_peer, ours_peer = timed(lambda: ours_pipeline(peer), 3)
    npb = len(peer)
    print(f"\n## backtrader on the first {npb:,} bars: {t_bt:.2f} s = {npb / t_bt:,.0f} bars/s; "
          f"{bt_out}; ours on the same bars: {ours_peer}")  # fmt: skip
    rows.append((f"single backtest vs backtrader ({npb:,} bars, bars/s)",
                 f"{npb / t_ours_peer:,.0f}", f"backtrader {npb / t_bt:,.0f}",
                 f"{t_bt / t_ours_peer:.0f}x"))  # fmt: skip

    k = min(a.check_bars, n)
    print(f"\n## cross-check on the first {k:,} bars (where equity has not been eaten by fees)")
    checks = {
        "ours": ours_pipeline(bars.iloc[:k]),
        "vectorbt": vectorbt_pipeline(vbars.iloc[:k]),
        "backtrader": backtrader_run(bars.iloc[:k]),
    }
    for name, out in checks.items():
        rel = out["final_equity"] / checks["ours"]["final_equity"] - 1.0
        print(f"{name:10s} {out['n_trades']:6d} closed trades, final equity "
              f"{out['final_equity']:12.4f} ({rel:+.4%} vs ours)")  # fmt: skip

    sets = grid(a.quick)
    sweep_bars = bars.iloc[:n_sweep]
    evals = len(sweep_bars) * len(sets)
    run_sweep(sweep_bars.iloc[:1000], SmaCross, sets[:2], CONFIG)  # warm
    c_ours, w_ours, _ = cpu_and_wall(lambda: run_sweep(sweep_bars, SmaCross, sets, CONFIG))
    vsweep = vbars.iloc[:n_sweep]
    vectorbt_sweep(vsweep.iloc[:1000], sets[:2], 2)  # warm
    c_vbt, w_vbt, _ = cpu_and_wall(lambda: vectorbt_sweep(vsweep, sets, 25))
    cores_ours, cores_vbt = max(1.0, c_ours / w_ours), max(1.0, c_vbt / w_vbt)
    per_core_ours, per_core_vbt = evals / w_ours / cores_ours, evals / w_vbt / cores_vbt
    print(f"\n## sweep: {len(sets)} sets x {len(sweep_bars):,} bars = {evals:,} bar-evaluations")
    print(f"ours     {w_ours:.2f} s wall, {c_ours:.2f} s cpu -> {per_core_ours:,.0f} per core/s")
    print(f"vectorbt {w_vbt:.2f} s wall, {c_vbt:.2f} s cpu -> {per_core_vbt:,.0f} per core/s")
    rows.append((f"sweep, {len(sets)} sets x {len(sweep_bars):,} bars (bar-evals/s per core)",
                 f"{per_core_ours:,.0f}", f"vectorbt {per_core_vbt:,.0f}",
                 f"{per_core_ours / per_core_vbt:.1f}x"))  # fmt: skip
    rows.append((f"peak RSS, {a.rss_bars:,}-bar backtest incl. data (MB)",
                 f"{rss['peak_mb']:,.0f}", "", ""))  # fmt: skip
    cli_section(a, rows, bars=bars, backtrader_rate=npb / t_bt)
    print_summary(rows)


def cli_section(
    a: argparse.Namespace,
    rows: list[tuple[str, str, str, str]],
    *,
    bars: pd.DataFrame | None = None,
    backtrader_rate: float | None = None,
) -> None:
    """`n1v1 backtest --json` as a user runs it, against backtrader measured in this run."""
    n = a.bars
    if bars is None or len(bars) < 2 * n:
        bars = generate_bars(2 * n, timeframe="1m", seed=0)
    if backtrader_rate is None:
        peer = bars.iloc[: a.peer_bars]
        t_bt, _ = timed(lambda: backtrader_run(peer))
        backtrader_rate = len(peer) / t_bt
        print(f"\n## backtrader on the first {len(peer):,} bars: {t_bt:.2f} s")
    with tempfile.TemporaryDirectory(prefix="n1v1-bench-") as tmp:
        cli = cli_rates(bars, n, a.cli_repeat, Path(tmp), a.cli_format)
    print(
        f"\n## the whole command, `n1v1 backtest --data <{a.cli_format}> ... --json out.json "
        f"--no-progress`, best of {a.cli_repeat}\n"
        f"{n:,} bars: {cli['t1']:.2f} s = {cli['rate1']:,.0f} bars/s; {2 * n:,} bars: "
        f"{cli['t2']:.2f} s = {cli['rate2']:,.0f} bars/s; marginal {cli['marginal']:,.0f} bars/s"
        f"\nCPU time (user + system): {cli['c1']:.2f} s and {cli['c2']:.2f} s; marginal "
        f"{cli['marginal_cpu']:,.0f} bars per CPU-second"
        f"\nJSON {cli['json_mb']:.1f} MB on {2 * n:,} bars ({cli['equity_points']:,} equity "
        f"points, {cli['trades']:,} trades); backtrader {backtrader_rate:,.0f} bars/s"
    )
    what = f"whole `n1v1 backtest --json` ({a.cli_format})"
    rows.append((f"{what}, marginal {n:,} -> {2 * n:,} bars (bars/s)",
                 f"{cli['marginal']:,.0f}", f"backtrader {backtrader_rate:,.0f}",
                 f"{cli['marginal'] / backtrader_rate:.0f}x"))  # fmt: skip
    rows.append((f"{what}, marginal {n:,} -> {2 * n:,} bars (bars per CPU-second)",
                 f"{cli['marginal_cpu']:,.0f}", "", ""))  # fmt: skip
    rows.append((f"{what} on {2 * n:,} bars, start-up included (bars/s)",
                 f"{cli['rate2']:,.0f}", f"backtrader {backtrader_rate:,.0f}",
                 f"{cli['rate2'] / backtrader_rate:.0f}x"))  # fmt: skip


def print_summary(rows: list[tuple[str, str, str, str]]) -> None:
    print("\n## summary (ratio = ours / peer)\n| what | ours | peer | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
