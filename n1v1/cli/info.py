"""`n1v1 data`, `n1v1 strategies` and `n1v1 config`: look at what the library would use (and
`n1v1 data download`, in `n1v1.cli.download`, to fetch more of it)."""

from __future__ import annotations

import argparse
import inspect
import textwrap
from pathlib import Path
from typing import Any

from n1v1.cli.backtest import load_market, parse_set_options
from n1v1.cli.common import EXIT_OK, bounds_label, describe_bars, gap_report, render_table, ts_label
from n1v1.cli.download import add_download_command


def add_data_command(sub: Any) -> None:
    data = sub.add_parser("data", help="list, show, validate and download market data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    dsub.add_parser("list", help="the bundled datasets").set_defaults(handler=cmd_data_list)
    show = dsub.add_parser("show", help="head, tail and gap report of a dataset or file")
    show.add_argument("name", help="bundled dataset name or CSV/Parquet file")
    show.add_argument("--timeframe", help="resample first, e.g. 1h")
    show.add_argument("--rows", type=int, default=5, help="rows of head and tail (default 5)")
    show.set_defaults(handler=cmd_data_show)
    validate = dsub.add_parser("validate", help="check a CSV/Parquet file; every problem, by line")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_data_validate)
    add_download_command(dsub)


def add_config_command(sub: Any) -> None:
    config = sub.add_parser("config", help="show or check settings")
    csub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = csub.add_parser("show", help="the effective settings as YAML")
    show.add_argument("--config", type=Path, help="YAML settings file")
    show.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    show.set_defaults(handler=cmd_config_show)
    check = csub.add_parser("check", help="validate a YAML settings file (environment ignored)")
    check.add_argument("path", type=Path)
    check.set_defaults(handler=cmd_config_check)


def cmd_data_list(args: argparse.Namespace) -> int:
    from n1v1.data import list_datasets

    rows = [
        [d.name, d.venue, d.symbol, d.timeframe, f"{d.rows:,}", ts_label(d.first), ts_label(d.last)]
        for d in list_datasets()
    ]
    headers = ["name", "venue", "symbol", "timeframe", "rows", "first (UTC)", "last (UTC)"]
    print(render_table(headers, rows, right={4}))
    print("\nSource: LEAN sample data (Apache-2.0), see n1v1/data/samples/NOTICE.")
    return EXIT_OK


def cmd_data_show(args: argparse.Namespace) -> int:
    import pandas as pd

    from n1v1.config import parse_settings

    settings = parse_settings({"data": {"timeframe": args.timeframe}})
    bars = load_market(args.name, settings)
    print(describe_bars(args.name, bars))
    n = max(args.rows, 0)
    print()
    if len(bars) > 2 * n:  # one table, so head and tail share column widths
        lines = pd.concat([bars.head(n), bars.tail(n)]).to_string().splitlines()
        lines.insert(len(lines) - n, "...")
        print("\n".join(lines))
    else:
        print(bars.to_string())
    print()
    print(gap_report(bars))
    return EXIT_OK


def cmd_data_validate(args: argparse.Namespace) -> int:
    from n1v1.data import load_bars

    bars = load_bars(args.file)
    if bars.empty:
        print(f"{args.file}: valid, but it holds no bars (only a header)")
        return EXIT_OK
    print(f"{args.file}: valid")
    print(describe_bars(args.file, bars))
    print(gap_report(bars, largest=0))
    return EXIT_OK


def cmd_strategies(args: argparse.Namespace) -> int:
    from n1v1.strategies import get_strategy, list_strategies, param_space

    names = [args.name] if args.name else list_strategies()
    for i, name in enumerate(names):
        cls = get_strategy(name)
        doc = inspect.cleandoc(cls.__doc__ or "")
        summary = doc if args.name else " ".join(doc.split("\n\n")[0].split())
        print(f"{'' if i == 0 else chr(10)}{cls.name}: {summary}{chr(10) * bool(args.name)}")
        rows = [
            [p, spec.type.__name__, repr(spec.default), bounds_label(spec), spec.description]
            for p, spec in param_space(cls).items()
        ]
        if rows:
            table = render_table(["parameter", "type", "default", "bounds", "description"], rows)
            print(textwrap.indent(table, "  "))
        else:
            print("  (no parameters)")
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    import yaml

    from n1v1.config import load_settings

    settings = load_settings(args.config, overrides=parse_set_options(args.set))
    print("# effective settings: defaults < --config file < N1V1_* environment < --set")
    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False).rstrip())
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    from n1v1.config import load_settings

    load_settings(args.path, env={})
    print(f"{args.path}: valid")
    return EXIT_OK
