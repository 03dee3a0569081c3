"""`n1v1 walkforward`: walk-forward optimisation of a strategy's parameters, on Ray or in-process.

The command builds the parameter sets (`--grid` specs or `--random N` draws, n1v1.research.space),
runs `walk_forward_optimise` with a `RayEvaluator` (or `local_evaluator` with --local), prints the
per-window table and the summary, and writes the JSON and the HTML report. The research modules
and Ray are imported inside the handler, so `n1v1 --help` stays instant and Ray-free.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from n1v1.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    cost_line,
    describe_bars,
    notes_lines,
    render_table,
)


def add_walkforward_command(sub: Any) -> None:
    p = sub.add_parser(
        "walkforward",
        help="walk-forward optimisation: optimise in-sample, trade out-of-sample, report",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="CSV/Parquet file or bundled dataset name (repeat for several symbols)",
    )
    p.add_argument("--strategy", required=True, help="built-in name or package.module:Class")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="K=SPEC",
        help="parameter region (repeatable): lo:hi[:step], a,b,c or one value; "
        "parameters not given keep their defaults",
    )
    p.add_argument(
        "--random",
        type=int,
        metavar="N",
        help="draw N random sets (from the --grid regions, or the whole declared space)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --random (default 0)")
    p.add_argument("--train-bars", type=int, required=True, help="in-sample bars per window")
    p.add_argument("--test-bars", type=int, required=True, help="out-of-sample bars per window")
    p.add_argument("--step-bars", type=int, help="bars between windows (default: --test-bars)")
    p.add_argument("--mode", choices=("rolling", "expanding"), default="rolling")
    p.add_argument("--metric", default="sharpe", help="optimisation metric (default sharpe)")
    p.add_argument(
        "--min-trades", type=int, default=0, help="in-sample closed trades needed per symbol"
    )
    p.add_argument("--timeframe", help="resample to this timeframe first, e.g. 5m, 1h")
    p.add_argument("--start", help="first bar to use (UTC, ISO-8601; inclusive)")
    p.add_argument("--end", help="last bar to use (UTC; inclusive)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by key"
    )
    p.add_argument("--cash", type=float, help="initial cash (default 10000)")
    p.add_argument("--fee", type=float, help="maker and taker fee as a fraction")
    p.add_argument("--slippage-bps", type=float, help="fixed slippage in basis points")
    p.add_argument("--report", type=Path, metavar="PATH.html", help="write an HTML report")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("--local", action="store_true", help="evaluate in this process, without Ray")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--chunk-size", type=int, help="parameter sets per Ray task (default: auto)")
    p.set_defaults(handler=cmd_walkforward)


def cmd_walkforward(args: argparse.Namespace) -> int:
    from n1v1.backtest.sweep import METRIC_COLUMNS
    from n1v1.cli.backtest import parse_set_options
    from n1v1.cli.sweep import load_frames
    from n1v1.config import load_settings
    from n1v1.locations import persistent_locations
    from n1v1.research.evaluate import check_sweepable
    from n1v1.research.space import SweepError, grid_sets, random_sets
    from n1v1.research.walkforward import align_frames, walk_forward_optimise, walk_forward_windows
    from n1v1.strategies import get_strategy

    persistent_locations({"--report": args.report, "--json": args.json})
    overrides = parse_set_options(args.set)
    flags = {
        "data.timeframe": args.timeframe,
        "backtest.cash": args.cash,
        "execution.slippage_bps": args.slippage_bps,
    }
    if args.fee is not None:
        flags["execution.maker_fee"] = flags["execution.taker_fee"] = args.fee
    overrides.update({k: v for k, v in flags.items() if v is not None})
    settings = load_settings(args.config, overrides=overrides)
    frames = load_frames(args, settings)
    strategy_cls = get_strategy(args.strategy)
    # Everything a user can get wrong is checked here, before Ray starts or a window runs.
    try:
        if args.metric not in METRIC_COLUMNS:
            raise ValueError(f"--metric {args.metric!r}: choose from {', '.join(METRIC_COLUMNS)}")
        if args.min_trades < 0:
            raise ValueError(f"--min-trades: must be >= 0, got {args.min_trades}")
        specs = _grid_specs(args.grid)
        if args.random is not None:
            sets = random_sets(strategy_cls, args.random, specs or None, seed=args.seed)
        elif specs:
            sets = grid_sets(strategy_cls, specs)
        else:
            raise ValueError("give --grid K=SPEC (one or more) or --random N")
        aligned, _ = align_frames(frames)
        check_sweepable(aligned, settings)
        windows = walk_forward_windows(
            len(next(iter(aligned.values()))),
            train_bars=args.train_bars,
            test_bars=args.test_bars,
            step_bars=args.step_bars,
            mode=args.mode,
        )
        evaluator = _evaluator(args)
    except (SweepError, ValueError) as exc:
        return _user_error(str(exc))

    for bars in frames.values():
        print(describe_bars("data", bars))
    print(cost_line(settings))
    print(
        f"{strategy_cls.name}: {sets.describe()}; {len(windows)} {args.mode} windows of "
        f"{args.train_bars:,} in-sample and {args.test_bars:,} out-of-sample bars; chosen by "
        f"{args.metric}; {'in-process' if args.local else 'on Ray'}"
    )
    connected = False
    if not args.local:
        from n1v1.cluster import ensure_ray

        connected = ensure_ray(args.address)
    try:
        result = walk_forward_optimise(
            frames,
            strategy_cls,
            sets,
            settings,
            train_bars=args.train_bars,
            test_bars=args.test_bars,
            step_bars=args.step_bars,
            mode=args.mode,
            metric=args.metric,
            min_trades=args.min_trades,
            evaluator=evaluator,
            progress=_print_progress,
        )
    finally:
        if connected:
            import ray

            ray.shutdown()
    print()
    print(window_table(result))
    print()
    print(summary_text(result))
    for line in notes_lines(result.notes):
        print(line)
    if args.json is not None:
        print(f"Wrote {result.write_json(args.json)}")
    if args.report is not None:
        from n1v1.research.wf_report import write_walkforward_report

        print(f"Wrote {write_walkforward_report(args.report, result)}")
    return EXIT_OK


def window_table(result: Any) -> str:
    """One line per window: test period, the chosen parameters, IS and OOS metric, trades."""
    metric = result.config["metric"]
    varied = result.config["varying_parameters"]
    rows = []
    for r in result.windows.to_dict(orient="records"):
        params = r["params"]
        shown = ", ".join(f"{k}={params[k]}" for k in varied or params) if params else "in cash"
        rows.append(
            [
                str(r["window"]),
                f"{r['test_start']:%Y-%m-%d %H:%M}",
                f"{r['test_end']:%Y-%m-%d %H:%M}",
                shown,
                _fmt(r["is_metric"]),
                _fmt(r["oos_metric"]),
                _fmt(r["oos_is_ratio"]),
                _fmt(r["wfe"]),
                str(r["oos_trades"]),
                f"{r['end_equity']:,.2f}",
                _gaps_cell(r),
            ]
        )
    headers = [
        "window",
        "test from",
        "test to",
        "parameters",
        f"IS {metric}",
        f"OOS {metric}",
        "OOS/IS",
        "WFE",
        "OOS trades",
        "end equity",
        "gaps (train/test)",
    ]
    return render_table(headers, rows, right=range(4, len(headers)))


def _gaps_cell(row: dict[str, Any]) -> str:
    train, test = int(row.get("train_gaps") or 0), int(row.get("test_gaps") or 0)
    return f"{train}/{test}" if train or test else ""


def summary_text(result: Any) -> str:
    """The run in a few lines: IS vs OOS, walk-forward efficiency, deflated Sharpe ratio."""
    s, m, dsr = result.summary, result.metrics, result.deflated_sharpe
    metric = s["metric"]
    lines = [
        f"In-sample {metric} (mean of chosen sets): {_fmt(s['is_metric_mean'])}; out-of-sample: "
        f"{_fmt(s['oos_metric_mean'])} (mean of windows), {_fmt(s['oos_metric_stitched'])} "
        f"(stitched); OOS/IS {_fmt(s['oos_is_ratio'])}, OOS-IS {_fmt(s['oos_minus_is'])}",
        f"Out-of-sample: total return {_pct(m['total_return'])}, CAGR {_pct(m['cagr'])}, max "
        f"drawdown {_pct(m['max_drawdown'])}, {m['n_trades']} trades; walk-forward efficiency "
        f"(OOS CAGR / IS CAGR) {_fmt(s['wfe'])}",
    ]
    if dsr is not None:
        lines.append(
            f"Deflated Sharpe ratio: {dsr.dsr:.4f} (per-bar SR {dsr.sharpe:.5f} vs SR0 "
            f"{dsr.sharpe_benchmark:.5f}, the expected best of {dsr.n_trials} trials; "
            f"T={dsr.n_obs:,}, skew {dsr.skew:.3f}, kurtosis {dsr.kurtosis:.3f})"
        )
    stable = ", ".join(
        f"{r['parameter']} {r['mode']} in {r['mode_count']}/{len(r['values'])}"
        for r in result.stability.to_dict(orient="records")
    )
    if stable:
        lines.append(f"Most chosen values: {stable}")
    return "\n".join(lines)


def _grid_specs(items: list[str]) -> dict[str, str]:
    """["fast=5:20:5", "slow=30,50"] -> {"fast": "5:20:5", "slow": "30,50"}."""
    specs: dict[str, str] = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ValueError(f"--grid {item!r}: expected K=SPEC, e.g. fast=5:20:5 or slow=30,50")
        if name.strip() in specs:
            raise ValueError(f"--grid: parameter {name.strip()} given more than once")
        specs[name.strip()] = spec.strip()
    return specs


def _evaluator(args: argparse.Namespace) -> Any:
    """local_evaluator with --local, else a RayEvaluator (Ray is connected by the caller)."""
    if args.local:
        from n1v1.research.evaluate import local_evaluator

        return local_evaluator
    from n1v1.research.distributed import RayEvaluator

    return RayEvaluator(chunk_size=args.chunk_size)


def _print_progress(done: int, total: int) -> None:
    print(f"window {done}/{total} done", file=sys.stderr, flush=True)


def _fmt(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) or value != value else f"{value:,.3f}"


def _pct(value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) or value != value else f"{value:.2%}"


def _user_error(message: str) -> int:
    for line in message.splitlines() or ["error"]:
        print(f"n1v1: error: {line}", file=sys.stderr)
    return EXIT_ERROR
