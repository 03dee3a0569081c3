"""`n1v1 evaluate`: walk-forward evaluation of a registered model's recipe -> JSON and HTML.

The registered weights themselves are not scored: they were trained on some window of history, and
scoring them on data that overlaps it would be leakage. What is evaluated is the recipe in the
model card (features, labels, architecture, hyperparameters), retrained on every fold's training
rows only (docs/ml/evaluation.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK, notes_lines, render_table


def add_evaluate_command(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="walk-forward evaluation of a registered model's recipe (JSON + HTML)"
    )
    p.add_argument("--model", required=True, help="registry model name (root: ml.model_root)")
    p.add_argument(
        "--version",
        help="'promoted', 'latest' or vNNNN (default: the promoted version, else the latest)",
    )
    p.add_argument("--data", required=True, help="CSV/Parquet file or bundled dataset name")
    p.add_argument("--timeframe", help="resample to this timeframe (default: the card's)")
    p.add_argument("--start", help="first bar to use (UTC, ISO-8601; inclusive)")
    p.add_argument("--end", help="last bar to use (UTC; inclusive)")
    p.add_argument("--symbol", help="symbol name (default: from the file name or dataset)")
    p.add_argument("--folds", type=int, default=4, help="number of walk-forward folds (4)")
    p.add_argument("--mode", choices=("rolling", "expanding"), default="rolling")
    p.add_argument("--test-size", type=int, help="test rows per fold (default: half / folds)")
    p.add_argument("--train-size", type=int, help="rolling mode: training rows per fold")
    p.add_argument("--calibration", choices=("platt", "isotonic"), default="platt")
    p.add_argument("--epochs", type=int, help="override the card's maximum epochs")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by key"
    )
    p.add_argument("--fee", type=float, help="backtest maker and taker fee (default: settings)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("--report", type=Path, metavar="PATH.html", help="write an HTML report")
    p.set_defaults(handler=cmd_evaluate)


def recipe_from_card(card: dict[str, Any], data: str, epochs: int | None = None) -> Any:
    """The training recipe (a TrainSpec) a model card describes, to retrain per fold."""
    from n1v1.ml.spec import TrainSpec

    hp = card.get("hyperparameters") or {}
    fields = {
        "epochs": epochs or hp.get("epochs_max"),
        "batch_size": hp.get("batch_size"),
        "lr": hp.get("lr"),
        "weight_decay": hp.get("weight_decay"),
        "patience": hp.get("patience"),
        "seed": hp.get("seed"),
        "class_weight": hp.get("class_weight"),
        "val_fraction": hp.get("val_fraction"),
    }
    return TrainSpec(
        name=card["name"],
        data=data,
        features=card["feature_spec"],
        labels=card["label_spec"],
        model=card["model_spec"],
        **{k: v for k, v in fields.items() if v is not None},
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    import pydantic

    from n1v1.cli.backtest import load_market, parse_set_options
    from n1v1.config import load_settings
    from n1v1.ml.evaluation import EvaluationError, walk_forward_evaluate
    from n1v1.ml.registry import ModelRegistry, RegistryError

    overrides = parse_set_options(args.set)
    if args.fee is not None:
        overrides["execution.maker_fee"] = overrides["execution.taker_fee"] = args.fee
    settings = load_settings(args.config, overrides=overrides)
    registry = ModelRegistry(settings.ml.model_root)
    version = args.version
    try:
        if version is None:
            version = "promoted" if registry.promoted_version(args.model) else "latest"
            if version == "latest":
                print(
                    f"{args.model} has no promoted version: evaluating the recipe of its latest "
                    "version (the recipe is retrained on every fold; the weights are not used)"
                )
        card = registry.card(args.model, version)
        spec = recipe_from_card(card, args.data, args.epochs)
    except (RegistryError, KeyError, pydantic.ValidationError) as exc:
        return _user_error(f"model {args.model!r} ({version}): {exc}")
    timeframe = args.timeframe or (card.get("data") or {}).get("timeframe")
    if timeframe:
        settings = load_settings(args.config, overrides={**overrides, "data.timeframe": timeframe})
    bars = load_market(args.data, settings, symbol=args.symbol, start=args.start, end=args.end)
    print(
        f"Walk-forward evaluation of {args.model} {card.get('version')} "
        f"({spec.model.kind}, {spec.labels.kind} labels, horizon {spec.labels.horizon}) on "
        f"{args.data}: {len(bars):,} bars, {args.folds} {args.mode} folds"
    )
    try:
        result = walk_forward_evaluate(
            bars,
            spec,
            settings,
            n_folds=args.folds,
            mode=args.mode,
            test_size=args.test_size,
            train_size=args.train_size,
            calibration=args.calibration,
            progress=_print_progress,
        )
    except EvaluationError as exc:
        return _user_error(str(exc))
    print()
    print(summary_table(result))
    for line in notes_lines(result.notes):
        print(line)
    meta = {"model": args.model, "version": card.get("version"), "data": args.data}
    result.config.update(meta)
    if args.json is not None:
        print(f"Wrote {result.write_json(args.json)}")
    if args.report is not None:
        from n1v1.ml.report import write_evaluation_report

        title = f"Walk-forward: {args.model} {card.get('version')} on {args.data}"
        report = write_evaluation_report(args.report, result, title=title, notes=result.notes)
        print(f"Wrote {report}")
    return EXIT_OK


def summary_table(result: Any) -> str:
    """Per-fold test metrics and backtest returns as a plain-text table."""
    summary = result.summary()
    rows = []
    keys = [
        ("uncalibrated.auc", "AUC", "{:.4f}"),
        ("calibrated.auc", "AUC (calibrated)", "{:.4f}"),
        ("uncalibrated.log_loss", "log loss", "{:.4f}"),
        ("calibrated.log_loss", "log loss (calibrated)", "{:.4f}"),
        ("base_rate.log_loss", "log loss (base rate)", "{:.4f}"),
        ("uncalibrated.brier", "Brier", "{:.4f}"),
        ("calibrated.brier", "Brier (calibrated)", "{:.4f}"),
        ("base_rate.brier", "Brier (base rate)", "{:.4f}"),
        ("ml_signal.total_return", "ml_signal return", "{:.2%}"),
        ("buy_and_hold.total_return", "buy_and_hold return", "{:.2%}"),
        ("best_rule.total_return", "best rule return", "{:.2%}"),
    ]
    for key, label, fmt in keys:
        entry = summary[key]
        cells = [_cell(fmt, v) for v in entry["per_fold"]]
        rows.append([label, *cells, _cell(fmt, entry["mean"])])
    best = [f.economic.get("best_rule", {}).get("strategy", "-") for f in result.folds]
    rows.append(["best rule (train+val Sharpe)", *best, ""])
    headers = ["test", *(f"fold {f.number}" for f in result.folds), "mean"]
    return render_table(headers, rows, right=range(1, len(headers)))


def _cell(fmt: str, value: Any) -> str:
    return "n/a" if not isinstance(value, int | float) or value != value else fmt.format(value)


def _print_progress(event: dict[str, Any]) -> None:
    if event["event"] == "fold_done":
        fold = event["result"]
        metrics = fold.metrics["uncalibrated"]
        print(
            f"fold {fold.number}: test {fold.periods['test']['start']} .. "
            f"{fold.periods['test']['end']}  AUC {_cell('{:.4f}', metrics['auc'])}  "
            f"log loss {metrics['log_loss']:.4f}  ml_signal "
            f"{_cell('{:.2%}', fold.economic['ml_signal']['total_return'])}",
            flush=True,
        )
        for note in fold.notes:
            print(f"  caution: {note}", flush=True)


def _user_error(message: str) -> int:
    for line in message.splitlines() or ["error"]:
        print(f"n1v1: error: {line}", file=sys.stderr)
    return EXIT_ERROR
