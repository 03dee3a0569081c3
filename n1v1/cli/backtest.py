"""`n1v1 backtest` and `n1v1 demo`: flags become settings overrides, then the library runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from n1v1.cli.common import (
    EXIT_OK,
    cost_line,
    describe_run,
    metrics_table,
    strategies_summary,
    trades_summary,
)

if TYPE_CHECKING:
    import pandas as pd

    from n1v1.backtest.runner import BacktestResult
    from n1v1.config import Settings
    from n1v1.strategies import Strategy

# The demo: sma_cross against the buy-and-hold baseline on real Coinbase BTC-USD minute bars.
# The bundled file holds four separate stretches of days between 2016 and 2018; a backtest across
# the months-long gaps would book whole price moves (600 -> 4,600 -> 19,000 USD) as one bar's
# return, so the demo uses the file's longest gap-free stretch. 5-minute bars give sma_cross a
# dozen or more round trips there; on 1-minute bars fees dominate everything.
DEMO_DATASET = "coinbase_BTC-USD_1m"
DEMO_START, DEMO_END = "2016-10-07", "2016-10-09"
DEMO_TIMEFRAME = "5m"
DEMO_STRATEGIES = ("sma_cross", "buy_and_hold")
DEMO_FEE, DEMO_STOP_LOSS = 0.001, 0.02


def add_backtest_command(sub: Any) -> None:
    p = sub.add_parser("backtest", help="backtest strategies on one data file or dataset")
    p.add_argument("--data", required=True, help="CSV/Parquet file or bundled dataset name")
    p.add_argument(
        "--strategy",
        required=True,
        action="append",
        help="built-in name or package.module:Class; repeat it to net several in one account",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="strategy parameter (repeatable), e.g. --param fast=5; with several strategies "
        "name the strategy: --param ema_cross.fast=5",
    )
    p.add_argument("--timeframe", help="resample to this timeframe first, e.g. 5m, 1h")
    p.add_argument("--start", help="first bar to use (UTC, ISO-8601; inclusive)")
    p.add_argument(
        "--end", help="last bar to use (UTC; inclusive, a bare date means the whole day)"
    )
    p.add_argument("--symbol", help="symbol name (default: from the file name or dataset)")
    p.add_argument("--config", type=Path, help="YAML settings file (see examples/config.yaml)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any setting by dotted key, e.g. --set risk.max_drawdown=0.2",
    )
    p.add_argument("--cash", type=float, help="initial cash (default 10000)")
    p.add_argument("--fee", type=float, help="maker and taker fee as a fraction (0.001 = 0.1%%)")
    p.add_argument("--slippage-bps", type=float, help="fixed slippage in basis points")
    sizing = p.add_mutually_exclusive_group()
    sizing.add_argument("--qty", type=float, help="fixed quantity per position (sizing: fixed)")
    sizing.add_argument("--fraction", type=float, help="fraction of equity per position")
    p.add_argument("--fill", choices=("next_open", "close"), help="market fill price rule")
    p.add_argument("--allow-short", action="store_const", const=True, help="allow short positions")
    p.add_argument("--stop-loss", type=float, metavar="FRAC", help="stop-loss, e.g. 0.02 = 2%%")
    p.add_argument("--take-profit", type=float, metavar="FRAC", help="take-profit fraction")
    p.add_argument("--trailing-stop", type=float, metavar="FRAC", help="trailing stop fraction")
    p.add_argument("--engine", choices=("auto", "event", "fast"), help="simulation path")
    p.add_argument("--json", type=Path, metavar="PATH", help="write metrics, trades, equity")
    p.add_argument("--report", type=Path, metavar="PATH.html", help="write an HTML report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_backtest)


def backtest_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings overrides (dotted keys) that the backtest flags stand for."""
    overrides = parse_set_options(args.set)
    flags = {
        "data.timeframe": args.timeframe,
        "backtest.cash": args.cash,
        "backtest.engine": args.engine,
        "execution.slippage_bps": args.slippage_bps,
        "execution.fill": args.fill,
        "risk.allow_short": args.allow_short,
        "risk.stop_loss_pct": args.stop_loss,
        "risk.take_profit_pct": args.take_profit,
        "risk.trailing_stop_pct": args.trailing_stop,
    }
    if args.fee is not None:
        flags["execution.maker_fee"] = flags["execution.taker_fee"] = args.fee
    if args.qty is not None:
        flags.update({"risk.sizing": "fixed", "risk.qty": args.qty})
    if args.fraction is not None:
        flags.update({"risk.sizing": "fraction", "risk.fraction": args.fraction})
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return overrides


def parse_set_options(items: Iterable[str]) -> dict[str, Any]:
    """["risk.max_drawdown=0.2"] -> {"risk.max_drawdown": 0.2}; values are YAML scalars."""
    import yaml

    from n1v1.config import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. risk.max_drawdown=0.2")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            out[key.strip()] = raw
    return out


def cmd_backtest(args: argparse.Namespace) -> int:
    from n1v1.backtest.runner import run_backtest
    from n1v1.config import load_settings

    settings = load_settings(args.config, overrides=backtest_overrides(args))
    bars = load_market(args.data, settings, symbol=args.symbol, start=args.start, end=args.end)
    strategies = build_strategies(args.strategy, args.param)
    result = run_backtest(bars, strategies, settings, progress=_progress(args))
    named = [(s.name, s.params.model_dump()) for s in strategies]
    described = " + ".join(f"{n}({', '.join(f'{k}={v}' for k, v in p.items())})" for n, p in named)
    print(f"{described} on {args.data}")
    print(describe_run(bars, settings))
    print()
    print(metrics_table({result.strategy: result}))
    print()
    print(trades_summary(result))
    if len(result.strategies) > 1:
        print(strategies_summary(result))
    written = write_outputs(
        result, bars, args.json, args.report, title=f"{result.strategy} on {args.data}"
    )
    for path in written:
        print(f"Wrote {path}")
    return EXIT_OK


def load_market(
    source: str,
    settings: Settings,
    *,
    symbol: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> pd.DataFrame:
    """`n1v1.data.load_market` with the data settings (gap policy, timeframe) of `settings`."""
    from n1v1.data import load_market as load

    return load(
        source,
        symbol=symbol,
        gap_policy=settings.data.gap_policy,
        timeframe=settings.data.timeframe,
        start=start,
        end=end,
    )


def build_strategies(names: Sequence[str], overrides: Sequence[str]) -> list[Strategy]:
    """The strategies of repeated --strategy flags; with several, each --param names its strategy
    (`ema_cross.fast=5`), so no parameter silently lands on the wrong one."""
    if len(names) == 1:
        return [build_strategy(names[0], overrides)]
    from n1v1.config import ConfigError

    mine: dict[str, list[str]] = {name: [] for name in names}
    for item in overrides:
        owner, dot, rest = item.partition(".")
        if not dot or owner not in mine or "=" not in rest:
            raise ConfigError(
                f"--param {item!r}: with several strategies write STRATEGY.KEY=VALUE, STRATEGY "
                f"one of {list(mine)}"
            )
        mine[owner].append(rest)
    return [build_strategy(name, mine[name]) for name in names]


def build_strategy(name: str, overrides: Sequence[str]) -> Strategy:
    """A strategy from a name or `module:Class` path and `k=v` overrides, validated."""
    from n1v1.strategies import create_strategy, get_strategy, parse_param_overrides

    if ":" in name and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # let `my_strategies:MyClass` resolve from the cwd
    params = parse_param_overrides(get_strategy(name), overrides)
    return create_strategy(name, params)


def write_outputs(
    result: BacktestResult,
    bars: pd.DataFrame,
    json_path: Path | None,
    report_path: Path | None,
    *,
    title: str,
) -> list[Path]:
    from n1v1.backtest.report import write_result_report

    written = []
    if json_path is not None:
        written.append(result.write_json(json_path))
    if report_path is not None:
        written.append(
            write_result_report(
                report_path, result, bars, title=title, cost_note=cost_line(result.settings)
            )
        )
    return written


def _progress(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def cmd_demo(args: argparse.Namespace) -> int:
    from n1v1.backtest.runner import run_backtest
    from n1v1.config import load_settings

    overrides = {
        "data.timeframe": DEMO_TIMEFRAME,
        "execution.maker_fee": DEMO_FEE,
        "execution.taker_fee": DEMO_FEE,
        "risk.stop_loss_pct": DEMO_STOP_LOSS,
    }
    settings = load_settings(None, overrides=overrides)
    bars = load_market(DEMO_DATASET, settings, start=DEMO_START, end=DEMO_END)
    print(
        f"N1V1 demo: {' vs '.join(DEMO_STRATEGIES)} on {DEMO_DATASET} resampled to "
        f"{DEMO_TIMEFRAME},\nits longest gap-free stretch ({DEMO_START} to {DEMO_END}; the file's "
        "other days lie months apart)."
    )
    print(describe_run(bars, settings))
    results: dict[str, BacktestResult] = {}
    for name in DEMO_STRATEGIES:
        strategy = build_strategy(name, [])
        results[name] = run_backtest(bars, strategy, settings, progress=_progress(args))
    print()
    print(metrics_table(results))
    print()
    for result in results.values():
        print(trades_summary(result))
    main_result = results[DEMO_STRATEGIES[0]]
    json_path, report_path = args.out / "demo.json", args.out / "demo_report.html"
    write_outputs(
        main_result,
        bars,
        json_path,
        report_path,
        title=f"{main_result.strategy} on {DEMO_DATASET} ({DEMO_TIMEFRAME}, {DEMO_START} to "
        f"{DEMO_END})",
    )
    print(
        f"\nThe same run from the CLI: n1v1 backtest --data {DEMO_DATASET} --timeframe "
        f"{DEMO_TIMEFRAME} --start {DEMO_START} --end {DEMO_END} --strategy "
        f"{DEMO_STRATEGIES[0]} --fee {DEMO_FEE} --stop-loss {DEMO_STOP_LOSS} --json {json_path}"
    )
    print(f"Wrote {json_path}")
    print(f"Report: {report_path.resolve()}")
    return EXIT_OK
