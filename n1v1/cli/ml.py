"""`n1v1 train` and `n1v1 models list|show|promote|rollback`.

`n1v1 train` is also what `jobs/train.py` runs (locally or under `ray job submit`), so the flags,
the spec merging and the Ray start-up exist once. The spec is a YAML TrainSpec (`--spec`) with
flags on top; settings come from `--config` / N1V1_* / `--set` like every other command.

Nothing here imports ray or torch at module level (tests/test_architecture.py imports this module
and fails if ray gets loaded): the handlers import what they need.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from n1v1.cli.backtest import parse_set_options
from n1v1.cli.common import EXIT_ERROR, EXIT_OK, render_table

if TYPE_CHECKING:
    from n1v1.config import Settings
    from n1v1.ml.registry import ModelRegistry
    from n1v1.ml.spec import TrainSpec

# flag -> (section of the TrainSpec or None for the top level, key)
_SPEC_FLAGS: dict[str, tuple[str | None, str]] = {
    "name": (None, "name"),
    "data": (None, "data"),
    "timeframe": (None, "timeframe"),
    "start": (None, "start"),
    "end": (None, "end"),
    "epochs": (None, "epochs"),
    "batch_size": (None, "batch_size"),
    "lr": (None, "lr"),
    "weight_decay": (None, "weight_decay"),
    "patience": (None, "patience"),
    "val_fraction": (None, "val_fraction"),
    "seed": (None, "seed"),
    "class_weight": (None, "class_weight"),
    "keep_checkpoints": (None, "checkpoints_to_keep"),
    "model": ("model", "kind"),
    "hidden": ("model", "hidden"),
    "dropout": ("model", "dropout"),
    "window": ("model", "window"),
    "horizon": ("labels", "horizon"),
    "label_kind": ("labels", "kind"),
    "fee": ("labels", "fee"),
    "margin": ("labels", "margin"),
}


# -- parsers ---------------------------------------------------------------------------------------
def add_train_command(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on Ray Train and register it",
        description="Train on a local Ray (started here) or a cluster (--address, RAY_ADDRESS). "
        "Re-running with the same --run-name resumes from the latest checkpoint.",
    )
    add_train_arguments(p)
    p.set_defaults(handler=cmd_train)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `n1v1 train` (and of jobs/train.py, which runs `n1v1 train`)."""
    p.add_argument("--spec", type=Path, metavar="PATH", help="YAML TrainSpec; flags override it")
    p.add_argument("--name", help="registry model name, e.g. btc_mlp")
    p.add_argument("--data", help="bundled dataset name or CSV/Parquet file")
    p.add_argument("--timeframe", help="resample first, e.g. 5m")
    p.add_argument("--start", help="first bar (UTC, inclusive)")
    p.add_argument("--end", help="last bar (UTC, inclusive)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, help="default 512")
    p.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--patience", type=int, help="early stopping: epochs without a better val loss")
    p.add_argument("--val-fraction", type=float, help="validation share of the rows (default 0.2)")
    p.add_argument("--seed", type=int)
    p.add_argument("--class-weight", choices=("none", "balanced"))
    p.add_argument("--keep-checkpoints", type=int, help="kept: this many best + the latest")
    p.add_argument("--model", choices=("mlp", "tcn", "gru"), help="architecture (default mlp)")
    p.add_argument("--hidden", type=_int_tuple, help="mlp hidden sizes, e.g. 64,32")
    p.add_argument("--dropout", type=float)
    p.add_argument("--window", type=int, help="tcn/gru: bars per input window")
    p.add_argument("--horizon", type=int, help="label horizon in bars (also the purge gap)")
    p.add_argument("--label-kind", choices=("binary", "ternary"))
    p.add_argument("--fee", type=float, help="label cost per side (threshold = 2 fee + margin)")
    p.add_argument("--margin", type=float)
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a setting")
    p.add_argument("--num-workers", type=int, help="Ray Train workers (ml.num_workers)")
    p.add_argument("--use-gpu", action="store_const", const=True, help="ml.use_gpu")
    p.add_argument("--storage-path", help="checkpoints: a directory or URI (ml.storage_path)")
    p.add_argument("--model-root", help="model registry directory (ml.model_root)")
    p.add_argument("--run-name", help="Ray run name (default: --name); reuse it to resume")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--max-failures", type=int, default=0, help="worker failures to recover from")
    p.add_argument("--no-register", action="store_true", help="train only; do not register")
    p.add_argument(
        "--no-promote",
        action="store_true",
        help="register without promoting (default: promote when the gate passes)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write the result summary as JSON")


def add_models_command(sub: Any) -> None:
    models = sub.add_parser("models", help="list, show, promote and roll back registry models")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = msub.add_parser("list", help="models, or the versions of one model")
    listing.add_argument("name", nargs="?")
    listing.set_defaults(handler=cmd_models_list)
    show = msub.add_parser("show", help="the model card of a version (default: promoted)")
    show.add_argument("name")
    show.add_argument("version", nargs="?", default="promoted", help="vNNNN, latest, promoted")
    show.add_argument("--json", action="store_true", help="the full card as JSON")
    show.set_defaults(handler=cmd_models_show)
    promote = msub.add_parser("promote", help="serve a version if it beats the promoted one")
    promote.add_argument("name")
    promote.add_argument("version", help="vNNNN or latest")
    promote.add_argument("--force", action="store_true", help="skip the promotion gate")
    promote.set_defaults(handler=cmd_models_promote)
    rollback = msub.add_parser("rollback", help="re-point to the previously promoted version")
    rollback.add_argument("name")
    rollback.set_defaults(handler=cmd_models_rollback)
    for p in (listing, show, promote, rollback):
        p.add_argument("--config", type=Path, help="YAML settings file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        p.add_argument("--model-root", help="registry directory (ml.model_root)")


def _int_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 64,32, got {text!r}") from None


# -- train -----------------------------------------------------------------------------------------
def load_train_spec(args: argparse.Namespace) -> TrainSpec:
    """The TrainSpec from --spec (YAML) with every given flag on top; errors name the key."""
    import pydantic

    from n1v1.config import ConfigError, format_validation_error, read_yaml_mapping
    from n1v1.ml.spec import TrainSpec

    data: dict[str, Any] = {}
    if args.spec is not None:
        data = read_yaml_mapping(args.spec, "spec file")
    for flag, (section, key) in _SPEC_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if section is None:
            data[key] = value
        else:
            nested = data.get(section) or {}
            if not isinstance(nested, dict):
                raise ConfigError(f"{section}: expected a mapping, got {nested!r}")
            data[section] = {**nested, key: value}
    try:
        return TrainSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        source = f"{args.spec} + flags" if args.spec else "flags"
        message = format_validation_error(exc, TrainSpec)
        raise ConfigError(f"train spec ({source}):\n{message}") from None


def _settings(args: argparse.Namespace, **flags: Any) -> Settings:
    from n1v1.config import load_settings

    overrides = parse_set_options(args.set)
    overrides.update({key: value for key, value in flags.items() if value is not None})
    return load_settings(args.config, overrides=overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from n1v1.ml.train import TrainingError

    spec = load_train_spec(args)
    settings = train_settings(args)
    try:
        result = train_model(args, spec, settings, run_name=args.run_name)
    except TrainingError as exc:
        print_training_error(exc)
        return EXIT_ERROR
    result["promotion"] = promote_trained(args, settings, result)
    write_result_json(args, result)
    return EXIT_OK


def train_settings(args: argparse.Namespace) -> Settings:
    """The settings of a training command: --config, N1V1_*, --set and the ml flags. Where the
    run writes (checkpoints, registry, --json) is checked here, before data is read or Ray
    starts: under a Ray job it must be persistent (`n1v1.locations`), else this refuses."""
    from n1v1.ml.prepare import persistent_ml_paths

    settings = _settings(
        args,
        **{
            "ml.num_workers": args.num_workers,
            "ml.use_gpu": args.use_gpu,
            "ml.storage_path": args.storage_path,
            "ml.model_root": args.model_root,
        },
    )
    persistent_ml_paths(settings.ml, {"--json": args.json})
    return settings


def train_model(
    args: argparse.Namespace, spec: TrainSpec, settings: Settings, *, run_name: str | None
) -> dict[str, Any]:
    """Train (and register unless --no-register) on the Ray that `ensure_ray` finds or starts;
    `n1v1 train` and `n1v1 retrain` both train through here. Raises TrainingError."""
    from n1v1.ml.registry import validate_name
    from n1v1.ml.train import prepare_data, run_training

    if run_name is not None:
        validate_name(run_name)  # it names a directory under the storage path
    data = prepare_data(spec, settings)  # bad data fails here, before a Ray cluster starts
    from n1v1.cluster import ensure_ray

    local_cpus = max(os.cpu_count() or 1, settings.ml.num_workers)  # one CPU per Train worker
    started = ensure_ray(args.address, num_cpus=local_cpus, dashboard=True, quiet=True)
    try:
        result = run_training(
            spec,
            settings,
            run_name=run_name,
            register=not args.no_register,
            progress=print_progress,
            max_failures=args.max_failures,
            data=data,
        )
    finally:
        if started:
            import ray

            ray.shutdown()
    print(f"best checkpoint: {result['checkpoint_path']}")
    return result


def print_training_error(exc: Exception) -> None:
    for line in str(exc).splitlines():
        print(f"n1v1: error: {line}", file=sys.stderr)


def write_result_json(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"Wrote {args.json}")


def promote_trained(
    args: argparse.Namespace, settings: Settings, result: dict[str, Any]
) -> dict[str, Any]:
    """Run the promotion gate on the version just registered and promote it if it passes (unless
    --no-promote); print the verdict either way. Returns {"promoted": bool, "gate": [...]}, plus
    "previous" (the version it replaced) when promoted, or "rejected" (the gate's message),
    "reason" and "serving" (the version still promoted) when the gate said no."""
    from n1v1.ml.gate import baseline_checks, failures
    from n1v1.ml.registry import ModelRegistry, PromotionRejected

    ml = settings.ml
    name, version = result["name"], result["version"]
    checks = baseline_checks(result["card"], margin=ml.promotion_margin, alpha=ml.promotion_alpha)
    for check in checks:
        print(f"gate {check.name}: {'PASS' if check.passed else 'FAIL'}: {check.detail}")
    outcome: dict[str, Any] = {"promoted": False, "gate": [c.to_dict() for c in checks]}
    if version is None:
        return outcome
    if args.no_promote:
        print(f"not promoted (--no-promote); to serve it: n1v1 models promote {name} {version}")
        return outcome
    registry = ModelRegistry(ml.model_root)
    try:
        record = registry.promote(
            name,
            version,
            metric=ml.promotion_metric,
            margin=ml.promotion_margin,
            alpha=ml.promotion_alpha,
        )
    except PromotionRejected as exc:
        outcome["rejected"] = str(exc)
        reason = "it fails the baseline gate" if failures(checks) else str(exc)
        serving = registry.promoted_version(name)
        still = f"{name}/{serving} stays promoted" if serving else f"{name} has no promoted version"
        outcome.update(reason=reason, serving=serving)
        print(
            f"NOT PROMOTED: {reason}. {still}.\n"
            f"  To serve {version} anyway: n1v1 models promote {name} {version} --force "
            "(recorded as forced, shown by `n1v1 models list`)"
        )
        return outcome
    previous = f" (was {record['previous']})" if record["previous"] else ""
    print(f"promoted {name}/{version}{previous}: it passed the gate")
    outcome.update(promoted=True, previous=record["previous"])
    return outcome


def print_progress(event: dict[str, Any]) -> None:
    """One line per training event (run_training's `progress`)."""
    kind = event.get("event")
    if kind == "start":
        (t0, t1), (v0, v1) = event["train_rows"], event["val_rows"]
        line = (
            f"training {event['name']} (run {event['run_name']} in {event['storage_path']}): "
            f"{event['rows']:,} rows: {t1 - t0:,} train, purge {event['purge']}, {v1 - v0:,} "
            f"val; {event['n_features']} features, {event['n_classes']} classes, "
            f"{event['num_workers']} worker(s)"
        )
    elif kind == "epoch":
        line = (
            f"epoch {event['epoch']:>3}/{event['epochs_max']}  train_loss "
            f"{event['train_loss']:.5f}  val_loss {event['val_loss']:.5f}  val_auc "
            f"{_number(event['val_auc'])}  best epoch {event['best_epoch']}  "
            f"{event['samples_per_second']:,.0f} samples/s"
            + ("  (early stop)" if event["stopped_early"] else "")
        )
    elif kind == "done":
        m = event["metrics"]
        version = event["version"]
        line = (
            f"best epoch {m['best_epoch']} of {m['epochs_run']}: val_loss {m['val_loss']:.5f}, "
            f"val_auc {_number(m['val_auc'])}; threshold {event['threshold']:.4f}"
            f"{_threshold_note(event['threshold'], event.get('horizon'))}"
        )
        backtest = event.get("validation_backtest")
        if backtest:
            line += "\n" + validation_line(backtest)
        line += "\n" + (f"registered {event['name']}/{version}" if version else "not registered")
    else:
        return
    print(line, flush=True)


def _threshold_note(threshold: float, horizon: int | None) -> str:
    if threshold >= 1.0:
        return " (no edge after fees on validation: ml_signal will not trade)"
    ahead = f"{horizon}-bar " if horizon else ""
    return (
        f" (ml_signal goes long when P(long) > threshold; chosen to maximise the {ahead}forward "
        "returns of the signalled validation rows net of a round-trip fee)"
    )


def validation_line(backtest: dict[str, Any]) -> str:
    """The validation backtest of the card, with units: returns in %, fees per fill."""
    model, hold = backtest["strategy"], backtest["buy_and_hold"]
    sessions = backtest["sessions"]
    return (
        f"validation backtest {_stamp(backtest['start'])} .. {_stamp(backtest['end'])} "
        f"({backtest['bars']:,} bars, {sessions} session{'s' if sessions != 1 else ''}, "
        f"{backtest['fee']:.2%} fee per fill): ml_signal {model['total_return']:+.2%} net "
        f"({model['n_trades']} trade{'s' if model['n_trades'] != 1 else ''}), buy-and-hold "
        f"{hold['total_return']:+.2%} net"
    )


def _stamp(iso: str) -> str:
    """'2017-12-17T22:40:00+00:00' -> '2017-12-17 22:40' (UTC, to the minute)."""
    return iso[:16].replace("T", " ")


def _percent(value: float | None) -> str:
    if not isinstance(value, int | float) or value != value:
        return "n/a"
    return f"{value:+.2%}"


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:  # None or NaN: undefined (e.g. AUC with one class)
        return "n/a"
    return f"{value:.{digits}f}"


# -- models ----------------------------------------------------------------------------------------
def _registry(args: argparse.Namespace) -> tuple[ModelRegistry, Settings]:
    from n1v1.locations import persistent_locations
    from n1v1.ml.registry import ModelRegistry

    settings = _settings(args, **{"ml.model_root": args.model_root})
    persistent_locations({"ml.model_root": settings.ml.model_root})  # promote writes there
    return ModelRegistry(settings.ml.model_root), settings


def _gate_status(registry: ModelRegistry, settings: Settings, name: str, version: str) -> str:
    ml = settings.ml
    return registry.gate_status(
        name, version, margin=ml.promotion_margin, alpha=ml.promotion_alpha
    )[0]


def cmd_models_list(args: argparse.Namespace) -> int:
    from n1v1.ml.registry import RegistryError

    registry, settings = _registry(args)
    if args.name is None:
        names = registry.list_models()
        if not names:
            print(f"no models in {registry.root}")
            return EXIT_OK
        rows = []
        for name in names:
            versions = registry.list_versions(name)
            latest = versions[-1]["version"] if versions else "-"
            promoted = registry.promoted_version(name)
            shown = "-"
            if promoted is not None:
                shown = promoted
                with contextlib.suppress(RegistryError):
                    status = _gate_status(registry, settings, name, promoted)
                    shown = f"{promoted} ({status})" if status != "passed" else promoted
            rows.append([name, str(len(versions)), shown, latest])
        print(render_table(["model", "versions", "promoted", "latest"], rows, right={1}))
        return EXIT_OK
    versions = registry.list_versions(args.name)
    metric = settings.ml.promotion_metric
    rows = []
    for v in versions:
        mark = "*" if v["promoted"] else ""
        if "error" in v:
            rows.append([v["version"], mark, "DAMAGED: " + v["error"], "", "", "", "", "", ""])
            continue
        metrics = v.get("metrics") or {}
        rows.append(
            [
                v["version"],
                mark,
                str(v.get("created_at") or "-"),
                str(v.get("kind") or "-"),
                _number(metrics.get(metric)),
                _percent(metrics.get("val_return")),
                _percent(metrics.get("val_buy_and_hold_return")),
                _number(v.get("threshold")),
                _gate_status(registry, settings, args.name, v["version"]),
            ]
        )
    headers = [
        "version",
        "promoted",
        "created",
        "kind",
        metric,
        "val return",
        "val buy&hold",
        "threshold",
        "gate",
    ]
    print(render_table(headers, rows, right={4, 5, 6, 7}) if rows else f"{args.name}: no versions")
    if rows:
        print("val return: ml_signal's net return on the validation bars (fees included)")
    return EXIT_OK


def cmd_models_show(args: argparse.Namespace) -> int:
    import yaml

    registry, settings = _registry(args)
    card = registry.card(args.name, args.version)
    if args.json:
        print(json.dumps(card, indent=2, sort_keys=True))
        return EXIT_OK
    version = card["version"]
    promoted = registry.promoted_version(args.name) == version
    ml = settings.ml
    status, checks = registry.gate_status(
        args.name, version, margin=ml.promotion_margin, alpha=ml.promotion_alpha
    )
    print(f"{args.name}/{version}{' (promoted)' if promoted else ''}: gate {status}")
    for check in checks:
        print(f"  {check.name}: {'PASS' if check.passed else 'FAIL'}: {check.detail}")
    shown = {k: v for k, v in card.items() if k not in ("history", "files")}
    print(yaml.safe_dump(shown, sort_keys=False, default_flow_style=None).rstrip())
    return EXIT_OK


def cmd_models_promote(args: argparse.Namespace) -> int:
    registry, settings = _registry(args)
    ml = settings.ml
    metric = ml.promotion_metric
    record = registry.promote(
        args.name,
        args.version,
        metric=metric,
        margin=ml.promotion_margin,
        alpha=ml.promotion_alpha,
        force=args.force,
    )
    previous = record["previous"]
    before = f"; was {previous} ({metric} {_number(record['previous_value'])})" if previous else ""
    forced = ""
    if record["forced"]:
        failed = record["failed_gate"]
        forced = " [forced, failed gate: " + "; ".join(failed) + "]" if failed else " [forced]"
    print(
        f"promoted {args.name}/{record['version']} ({metric} {_number(record['value'])})"
        f"{before}{forced}"
    )
    return EXIT_OK


def cmd_models_rollback(args: argparse.Namespace) -> int:
    registry, _ = _registry(args)
    current = registry.promoted_version(args.name)
    target = registry.rollback(args.name)
    print(f"rolled back {args.name}: {current} -> {target}")
    return EXIT_OK


# -- paper: the models of ml_signal slots ------------------------------------------------------
def ensure_slot_models(
    args_doc: dict[str, Any],
    allow_train: bool,
    *,
    dataset: str,
    end: str,
    epochs: int = 8,
    env: dict[str, str] | None = None,
) -> list[str]:
    """`n1v1 paper`: train each ml_signal model the config names that the registry lacks, then
    say plainly, for every ml_signal slot, which version it trades and whether that version
    passed the promotion gate. Returns those lines (printed here as well).

    The model is trained on `dataset` up to `end` (before the replay window) at the feed's bar
    size: a model reads features counted in bars, so one trained on 5-minute bars must not trade
    1-minute bars. `n1v1 train` promotes it only if it passes the gate; nothing is forced. A slot
    that pins a version that failed the gate still trades it in this paper session: that shows
    the ML path (features, inference, orders through the same engine) at work, and the lines
    printed here say the model is not validated, so nobody mistakes its orders for an edge.
    `env` is the training subprocess's environment (paper's: its Ray on loopback, no token)."""
    from n1v1.config import load_settings
    from n1v1.ml.registry import ModelRegistry, RegistryError

    root = args_doc.get("model_root", "models")
    timeframe = (args_doc.get("feed") or {}).get("timeframe")
    registry = ModelRegistry(root)
    ml = load_settings().ml
    lines: list[str] = []
    for slot in args_doc.get("strategies", []):
        if slot.get("name") != "ml_signal":
            continue
        name = slot["params"]["model"]
        version = slot["params"].get("version", "promoted")
        try:
            registry.resolve(name, version)
        except RegistryError:
            if not allow_train:
                raise RegistryError(
                    f"model {name} {version} is not in {root} (and --no-train)"
                ) from None
            _train_slot_model(name, root, timeframe, dataset, end, epochs, env)
        concrete = registry.resolve(name, version)  # the config's pinned version must exist
        status, checks = registry.gate_status(
            name, concrete, margin=ml.promotion_margin, alpha=ml.promotion_alpha
        )
        label = f"{name}/{concrete}"
        failed = "; ".join(f"{c.name}: {c.detail}" for c in checks if not c.passed)
        if not failed:
            promoted = registry.promoted_version(name) == concrete
            lines.append(
                f"ml_signal trades {label}: it passed the promotion gate"
                + (" and is the promoted version." if promoted else ".")
            )
        else:
            forced = " (promoted with --force)" if status.startswith("forced") else ""
            lines.append(
                f"WARNING: ml_signal trades {label}, an UNVALIDATED model{forced}: it failed the "
                f"promotion gate ({failed}). In this paper session its orders show the ML path at "
                f"work, not an edge. `n1v1 models show {name} {concrete} --model-root {root}` "
                "has the details."
            )
    for line in lines:
        print(line, flush=True)
    return lines


def _train_slot_model(
    name: str,
    root: str,
    timeframe: str | None,
    dataset: str,
    end: str,
    epochs: int,
    env: dict[str, str] | None = None,
) -> None:
    """`n1v1 train` of the demo model on bars before the replay window (a subprocess: the command
    a user would type, and it starts and stops its own private Ray)."""
    from n1v1.ml.registry import RegistryError

    where = f"resampled to {timeframe}" if timeframe else "at the feed's bar size"
    print(f"Training {name} on {dataset} {where} up to {end} (Ray Train, ~1 min) ...")
    command = [
        sys.executable,
        "-m",
        "n1v1",
        "train",
        "--name",
        name,
        "--data",
        dataset,
        "--end",
        end,
        "--epochs",
        str(epochs),
        "--model-root",
        root,
        "--storage-path",
        str(Path(root).resolve().parent / "ray_results"),
    ]
    if timeframe:
        command += ["--timeframe", timeframe]
    code = subprocess.run(command, check=False, env=env).returncode
    if code != 0:
        raise RegistryError(
            f"model {name} is not in {root}: `n1v1 train` exited with status {code} (its error "
            "is above)"
        )
