"""`n1v1 sweep`: grid, random or Bayesian parameter search, on Ray (default) or in-process.

    n1v1 sweep --data coinbase_BTC-USD_1m --data coinbase_ETH-USD_1m --timeframe 5m \
        --strategy sma_cross --grid fast=5:50:5 --grid slow=20:200:20 --out out/sma

Rerunning the same command with the same --out resumes: on Ray, finished chunks are read back
from out/checkpoint and only the missing ones run; a Bayesian search continues its Optuna study
(out/optuna.db). A different sweep in the same --out is refused, naming what differs.
`jobs/sweep.py` runs this command under `ray job submit`. See docs/research.md.

Nothing here imports Ray or the research modules at module level (tests/test_architecture.py):
the handler does, lazily.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK, format_metric, notes_lines, render_table

if TYPE_CHECKING:
    import pandas as pd

    from n1v1.config import Settings
    from n1v1.research.sweep import SweepResult

SHOWN_ROWS = 10  # ranked sets printed; every set is in summary.parquet


def add_sweep_command(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="grid / random / Bayesian parameter search over one or many symbols",
        description="Backtest many parameter sets through the fast path, on Ray (or --local), "
        "rank them by a metric averaged over symbols and re-run the best through the full "
        "engine. Rerun the same command with the same --out to resume.",
    )
    add_sweep_arguments(p)
    p.set_defaults(handler=cmd_sweep)


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `n1v1 sweep` (and of jobs/sweep.py, which runs `n1v1 sweep`)."""
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="CSV/Parquet file or bundled dataset name; repeat for more symbols",
    )
    p.add_argument("--strategy", required=True, help="built-in name or package.module:Class")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="K=SPEC",
        help="parameter region (repeatable): lo:hi:step, a,b,c or one value; "
        "unmentioned parameters keep their defaults",
    )
    search = p.add_mutually_exclusive_group()
    search.add_argument("--random", type=int, metavar="N", help="random search: N sets")
    search.add_argument("--bayes", type=int, metavar="N", help="Bayesian search: N trials")
    p.add_argument("--metric", default="sharpe", help="ranking metric (default sharpe)")
    p.add_argument("--min-trades", type=int, default=0, help="closed trades needed per symbol")
    p.add_argument("--top-k", type=int, default=3, help="best sets re-run through the engine")
    p.add_argument("--seed", type=int, default=0, help="random/Bayesian seed (default 0)")
    p.add_argument("--batch-size", type=int, help="Bayesian trials per batch (default 2/CPU)")
    p.add_argument("--timeframe", help="resample to this timeframe first, e.g. 5m, 1h")
    p.add_argument("--start", help="first bar to use (UTC, ISO-8601; inclusive)")
    p.add_argument("--end", help="last bar to use (UTC; inclusive)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by key"
    )
    p.add_argument("--fee", type=float, help="maker and taker fee as a fraction")
    p.add_argument("--chunk-size", type=int, help="parameter sets per Ray task (default: auto)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--local", action="store_true", help="run in this process, without Ray")
    p.add_argument("--out", type=Path, default=Path("out/sweep"), help="output directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_grid_options(items: list[str]) -> dict[str, str]:
    """["fast=5:50:5", "slow=20,40"] -> {"fast": "5:50:5", "slow": "20,40"}."""
    from n1v1.research.space import SweepError

    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name or not spec:
            raise SweepError(f"--grid {item!r}: expected NAME=SPEC, e.g. fast=5:50:5")
        if name in out:
            raise SweepError(f"--grid: parameter {name} given more than once")
        out[name] = spec
    return out


def _settings(args: argparse.Namespace) -> Settings:
    from n1v1.cli.backtest import parse_set_options
    from n1v1.config import load_settings

    overrides = parse_set_options(args.set)
    if args.timeframe is not None:
        overrides["data.timeframe"] = args.timeframe
    if args.fee is not None:
        overrides["execution.maker_fee"] = overrides["execution.taker_fee"] = args.fee
    return load_settings(args.config, overrides=overrides)


def load_frames(args: argparse.Namespace, settings: Settings) -> dict[str, pd.DataFrame]:
    """One frame per --data source, keyed by symbol (also used by `n1v1 walkforward`)."""
    from n1v1.cli.backtest import load_market
    from n1v1.research.space import SweepError

    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    for source in args.data:
        bars = load_market(source, settings, start=args.start, end=args.end)
        symbol = str(bars.attrs.get("symbol") or source)
        if symbol in frames:
            raise SweepError(
                f"--data {source}: symbol {symbol} is already loaded from {sources[symbol]}"
            )
        frames[symbol], sources[symbol] = bars, source
    return frames


def cmd_sweep(args: argparse.Namespace) -> int:
    from n1v1.research.space import SweepError

    try:
        return _sweep(args)
    except SweepError as exc:
        for line in str(exc).splitlines():
            print(f"n1v1: error: {line}", file=sys.stderr)
        return EXIT_ERROR


def _sweep(args: argparse.Namespace) -> int:
    from n1v1.locations import persistent_locations
    from n1v1.research.sweep import check_out_dir, parse_sweep_spec, run_parameter_sweep

    persistent_locations({"--out": args.out})  # a job's --out must outlive it (and resume)
    method = "bayes" if args.bayes is not None else "random" if args.random is not None else "grid"
    spec = parse_sweep_spec(
        {
            "strategy": args.strategy,
            "method": method,
            "params": parse_grid_options(args.grid),
            "n_trials": args.bayes if args.bayes is not None else args.random,
            "seed": args.seed,
            "metric": args.metric,
            "min_trades": args.min_trades,
            "top_k": args.top_k,
            "batch_size": args.batch_size,
        }
    )
    settings = _settings(args)
    frames = load_frames(args, settings)
    check_out_dir(args.out, spec, frames, settings)  # a different sweep there: refuse now
    show_bar = not args.no_progress and sys.stderr.isatty()
    where = "in this process" if args.local else "on Ray"
    print(
        f"{method} sweep of {spec.strategy} on {', '.join(frames)} "
        f"({', '.join(f'{len(f):,}' for f in frames.values())} bars) {where}; "
        f"ranking by {spec.metric}; output {args.out}"
    )
    started = False
    try:
        if args.local:
            from n1v1.research.evaluate import local_evaluator

            evaluator: Any = local_evaluator
        else:
            from n1v1.cluster import ensure_ray
            from n1v1.research.distributed import RayEvaluator

            started = ensure_ray(args.address)
            bayes = method == "bayes"  # its study is the checkpoint; its bar counts trials
            evaluator = RayEvaluator(
                chunk_size=args.chunk_size,
                progress=(show_bar and not bayes) or None,
                checkpoint=None if bayes else args.out / "checkpoint",
            )
        with _TrialBar(show_bar and method == "bayes") as progress:
            result = run_parameter_sweep(
                frames, spec, settings, evaluator, args.out, progress=progress
            )
    except KeyboardInterrupt:
        print(f"interrupted: rerun the same command (--out {args.out}) to resume", file=sys.stderr)
        raise
    finally:
        if started:
            import ray

            ray.shutdown()
    stats = getattr(evaluator, "stats", None)
    if stats is not None and stats.loaded_chunks:
        print(
            f"resumed: {stats.loaded_chunks} of {stats.total_chunks} chunks read from "
            f"{args.out / 'checkpoint'}, {stats.submitted_chunks} computed"
        )
    print(report_text(result))
    for path in result.files.values():
        print(f"Wrote {path}")
    return EXIT_OK


class _TrialBar:
    """A tqdm bar over Bayesian trials (or nothing), as a context manager giving the callback."""

    def __init__(self, enabled: bool) -> None:
        self.bar: Any = None
        self.enabled = enabled

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from tqdm import tqdm

        def update(done: int, total: int) -> None:
            if self.bar is None:
                self.bar = tqdm(total=total, unit="trial", desc="bayes", leave=False)
            self.bar.update(done - self.bar.n)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def report_text(result: SweepResult) -> str:
    """What was searched, the best ranked sets, and the best sets' full-engine check."""
    from n1v1.backtest.metrics import METRICS
    from n1v1.backtest.sweep import METRIC_COLUMNS

    spec = result.spec
    symbols = result.rows["symbol"].nunique()
    lines = [
        f"{result.n_sets:,} parameter sets x {symbols} symbol{'s' * (symbols != 1)} = "
        f"{len(result.rows):,} backtests"
        + (
            f"; {result.dropped:,} combination{'s' * (result.dropped != 1)} dropped as invalid "
            f"({result.drop_reasons[0]})"
            if result.dropped and result.drop_reasons
            else ""
        )
    ]
    summary = result.summary
    eligible = int(summary["eligible"].sum())
    if eligible < len(summary):
        lines.append(
            f"{len(summary) - eligible:,} sets not ranked (fewer than {spec.min_trades} trades "
            f"on a symbol, or {spec.metric} undefined)"
        )
    all_params = [c for c in result.rows.columns if c not in ("set_id", "symbol", *METRIC_COLUMNS)]
    params = [c for c in all_params if summary[c].nunique() > 1] or all_params[:4]
    shown = [spec.metric] + [
        m for m in ("total_return", "max_drawdown", "n_trades") if m != spec.metric
    ]
    top = summary[summary["eligible"]].head(SHOWN_ROWS)
    table_rows = [
        [str(r["rank"]), str(r["set_id"])]
        + [_param_text(r[c]) for c in params]
        + [format_metric(METRICS[m].unit if m != "n_trades" else "number", r[m]) for m in shown]
        for r in top.to_dict("records")
    ]
    headers = ["rank", "set", *params, *(f"{m} (mean)" for m in shown)]
    right = range(len(headers))
    lines += ["", render_table(headers, table_rows, right=right) if table_rows else "no ranked set"]
    if result.best:
        lines += ["", "Best sets re-run through the event-driven engine (per symbol):"]
        rows = []
        for best in result.best:
            for symbol, backtest in best.backtests.items():
                sweep_return = best.sweep[symbol]["total_return"]
                rows.append(
                    [
                        str(best.rank),
                        symbol,
                        format_metric("fraction", sweep_return),
                        format_metric("fraction", backtest.metrics.get("total_return")),
                        str(len(backtest.trades)),
                    ]
                )
        headers = ["rank", "symbol", "sweep total_return", "engine total_return", "trades"]
        lines.append(render_table(headers, rows, right={0, 2, 3, 4}))
    if result.notes:
        lines += ["", *notes_lines(result.notes)]
    return "\n".join(lines)


def _param_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
