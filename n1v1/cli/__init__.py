"""The `n1v1` command: backtest, inspect data, list strategies, check config, run the demo.

The CLI adds no behaviour of its own. Every flag becomes an override of the one settings model
(`n1v1.config`: defaults < YAML file < N1V1_* environment < flags), and the commands call the same
functions a notebook would (`load_bars`, `create_strategy`, `run_backtest`, `write_html_report`), so
a number printed here is the number the library computes. Mistakes a user can fix (bad data, an
unknown strategy, a parameter out of bounds, an unknown config key) end with
`n1v1: error: <message>` on stderr (one line per problem) and exit code 2, never a traceback.

Heavy modules (pandas, numba) are imported inside the commands so that `n1v1 --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from n1v1 import __version__
from n1v1.cli.backtest import add_backtest_command, cmd_demo
from n1v1.cli.common import EXIT_ERROR
from n1v1.cli.evaluate import add_evaluate_command
from n1v1.cli.info import add_config_command, add_data_command, cmd_strategies
from n1v1.cli.kube import add_kube_command
from n1v1.cli.live import add_live_command
from n1v1.cli.ml import add_models_command, add_train_command
from n1v1.cli.observe import add_observe_command
from n1v1.cli.paper import add_paper_command
from n1v1.cli.retrain import add_retrain_command
from n1v1.cli.store import add_store_command
from n1v1.cli.sweep import add_sweep_command
from n1v1.cli.walkforward import add_walkforward_command


# -- entry point -----------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) and return the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed --help or the usage error
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("n1v1: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `n1v1 strategies | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise  # a bug, not a user mistake: keep the traceback
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"n1v1: error: {line}", file=sys.stderr)
        return EXIT_ERROR


def _user_errors() -> tuple[type[BaseException], ...]:
    from n1v1.backtest.runner import BacktestError
    from n1v1.config import ConfigError
    from n1v1.data import DataError
    from n1v1.ml.registry import RegistryError
    from n1v1.research.space import SweepError
    from n1v1.strategies import StrategyError

    return (
        DataError,
        StrategyError,
        ConfigError,
        BacktestError,
        RegistryError,
        SweepError,
        OSError,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="n1v1",
        description="N1V1 research core: backtest strategies on OHLCV bars.",
        epilog="Settings precedence: defaults < --config file < N1V1_* env < command-line flags.",
    )
    parser.add_argument("--version", action="version", version=f"n1v1 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_backtest_command(sub)
    add_data_command(sub)
    strategies = sub.add_parser("strategies", help="list strategies with parameters and bounds")
    strategies.add_argument("name", nargs="?", help="show one strategy in full")
    strategies.set_defaults(handler=cmd_strategies)
    add_config_command(sub)
    demo = sub.add_parser("demo", help="backtest sma_cross vs buy-and-hold on bundled BTC data")
    demo.add_argument("--out", default="out", type=Path, help="output directory (default: out)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.set_defaults(handler=cmd_demo)
    add_evaluate_command(sub)
    add_train_command(sub)
    add_retrain_command(sub)
    add_models_command(sub)
    add_paper_command(sub)
    add_live_command(sub)
    add_observe_command(sub)
    add_sweep_command(sub)
    add_walkforward_command(sub)
    add_kube_command(sub)
    add_store_command(sub)
    return parser
