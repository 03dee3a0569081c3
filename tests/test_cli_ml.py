"""`n1v1 models ...` on a registry built in tmp_path (no Ray, no training), and `n1v1 train`'s
spec handling up to the point where Ray would start.

Versions are registered directly with tiny models whose val_auc is chosen so the promotion gate's
arithmetic is visible: margin 0.005 (the settings default), v0001 0.550, v0002 0.552, v0003 0.560.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from n1v1.cli import build_parser, main
from n1v1.ml.models import ModelSpec, build_model
from n1v1.ml.registry import ModelRegistry
from n1v1.ml.scaling import Standardizer

ROOT = Path(__file__).resolve().parent.parent
AUCS = {"v0001": 0.550, "v0002": 0.552, "v0003": 0.560}


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    reg = ModelRegistry(tmp_path / "models")
    spec = ModelSpec(hidden=(4,))
    scaler = Standardizer().fit(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])).to_dict()
    for i, auc in enumerate(AUCS.values()):
        card = {
            "model_spec": spec.model_dump(),
            "n_features": 3,
            "n_classes": 2,
            "feature_spec": {},
            "feature_hash": "0123456789abcdef",
            "metrics": {"val_auc": auc, "val_loss": 0.69 - i / 100},
            "threshold": 0.5,
        }
        state = build_model(spec, 3, 2, seed=i).state_dict()
        reg.register("btc_mlp", state_dict=state, scaler=scaler, card=card)
    return reg


def run(capsys: pytest.CaptureFixture[str], registry: ModelRegistry, *argv: str):
    code = main([*argv, "--model-root", str(registry.root)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("n1v1: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


# -- list and show ---------------------------------------------------------------------------------
def test_list_on_an_empty_registry_says_so(capsys, tmp_path):
    code, out, _ = run(capsys, ModelRegistry(tmp_path / "none"), "models", "list")
    assert code == 0 and "no models in" in out


def test_list_shows_models_with_version_count_and_promoted(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    code, out, _ = run(capsys, registry, "models", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("btc_mlp"))
    assert row.split() == ["btc_mlp", "3", "v0001", "v0003"]


def test_list_of_one_model_shows_each_version_and_its_metric(capsys, registry):
    registry.promote("btc_mlp", "v0002", force=True)
    code, out, _ = run(capsys, registry, "models", "list", "btc_mlp")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("v000")}
    assert set(rows) == set(AUCS)
    for version, auc in AUCS.items():
        assert f"{auc:.4f}" in rows[version]
    assert " * " in rows["v0002"] and " * " not in rows["v0001"]


def test_show_prints_the_card_and_json_prints_it_whole(capsys, registry):
    code, out, _ = run(capsys, registry, "models", "show", "btc_mlp", "v0002")
    assert code == 0
    assert out.startswith("btc_mlp/v0002\n") and "feature_hash: 0123456789abcdef" in out
    code, out, _ = run(capsys, registry, "models", "show", "btc_mlp", "latest", "--json")
    assert code == 0
    assert json.loads(out) == registry.card("btc_mlp", "v0003")


def test_show_without_a_promoted_version_names_the_alternatives(capsys, registry):
    code, _, err = run(capsys, registry, "models", "show", "btc_mlp")
    assert_user_error(code, err, "no promoted version", "'latest'")


# -- promote and rollback --------------------------------------------------------------------------
def test_the_first_promotion_needs_no_comparison(capsys, registry):
    code, out, _ = run(capsys, registry, "models", "promote", "btc_mlp", "v0001")
    assert code == 0 and "promoted btc_mlp/v0001 (val_auc 0.5500)" in out
    assert registry.promoted_version("btc_mlp") == "v0001"


def test_promotion_gate_rejects_a_version_within_the_margin(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    # 0.552 < 0.550 + 0.005 = 0.555: rejected, and the message shows both values
    code, _, err = run(capsys, registry, "models", "promote", "btc_mlp", "v0002")
    assert_user_error(code, err, "val_auc=0.552000", "val_auc=0.550000", "0.555000")
    assert registry.promoted_version("btc_mlp") == "v0001"


def test_promotion_gate_accepts_a_version_beating_the_margin(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    # 0.560 >= 0.555
    code, out, _ = run(capsys, registry, "models", "promote", "btc_mlp", "v0003")
    assert code == 0
    assert "promoted btc_mlp/v0003 (val_auc 0.5600); was v0001 (val_auc 0.5500)" in out


def test_the_margin_comes_from_settings(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    # margin 0.001: 0.552 >= 0.551 passes
    code, out, _ = run(
        capsys, registry, "models", "promote", "btc_mlp", "v0002",
        "--set", "ml.promotion_margin=0.001",
    )  # fmt: skip
    assert code == 0 and "promoted btc_mlp/v0002" in out


def test_force_skips_the_gate_and_is_reported(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    code, out, _ = run(capsys, registry, "models", "promote", "btc_mlp", "v0002", "--force")
    assert code == 0 and "[forced]" in out
    assert registry.history("btc_mlp")[-1]["forced"] is True


def test_rollback_returns_to_the_previous_promotion(capsys, registry):
    registry.promote("btc_mlp", "v0001")
    registry.promote("btc_mlp", "v0003")
    code, out, _ = run(capsys, registry, "models", "rollback", "btc_mlp")
    assert code == 0 and "rolled back btc_mlp: v0003 -> v0001" in out
    assert registry.promoted_version("btc_mlp") == "v0001"
    code, _, err = run(capsys, registry, "models", "rollback", "btc_mlp")
    assert_user_error(code, err, "nothing to roll back to")


def test_a_half_written_version_cannot_be_promoted(capsys, registry):
    (registry.root / "btc_mlp" / "v0003" / "COMPLETE").unlink()
    code, _, err = run(capsys, registry, "models", "promote", "btc_mlp", "v0003")
    assert_user_error(code, err, "v0003 is incomplete")


# -- validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("models", "show", "../btc_mlp"), "invalid model name '../btc_mlp'"),
        (("models", "list", "/etc"), "invalid model name '/etc'"),
        (("models", "promote", "btc_mlp", "../../v0001"), "invalid version '../../v0001'"),
        (("models", "rollback", "btc_mlp/.."), "invalid model name 'btc_mlp/..'"),
        (("models", "show", "unknown"), "unknown model 'unknown'"),
        (("models", "promote", "btc_mlp", "v0042"), "no version 'v0042'"),
    ],
)
def test_bad_names_and_versions_exit_2_naming_the_value(capsys, registry, argv, fragment):
    code, _, err = run(capsys, registry, *argv)
    assert_user_error(code, err, fragment)


# -- train: the spec, up to where Ray would start --------------------------------------------------
def test_train_flags_override_the_yaml_spec(tmp_path):
    from n1v1.cli.ml import load_train_spec

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        "name: btc_mlp\ndata: coinbase_BTC-USD_1m\nepochs: 9\n"
        "labels: {horizon: 30, kind: ternary}\nmodel: {kind: mlp, dropout: 0.2}\n"
    )
    args = build_parser().parse_args(
        ["train", "--spec", str(spec_file), "--epochs", "3", "--hidden", "8,4", "--horizon", "10"]
    )
    spec = load_train_spec(args)
    assert spec.epochs == 3 and spec.model.hidden == (8, 4) and spec.model.dropout == 0.2
    assert spec.labels.horizon == 10 and spec.labels.kind == "ternary"
    assert spec.name == "btc_mlp" and spec.data == "coinbase_BTC-USD_1m"


@pytest.mark.parametrize(
    ("spec_text", "flags", "fragments"),
    [
        (None, ["--name", "../x", "--data", "d"], ["name: invalid model name '../x'"]),
        (None, ["--data", "d"], ["name: Field required"]),
        ("name: m\ndata: d\nepoch: 3\n", [], ["epoch: unknown key; did you mean epochs?"]),
        ("name: m\ndata: d\nmodel: {kind: lstm}\n", [], ["model.kind"]),
        ("- a list\n", [], ["top level must be a mapping"]),
    ],
)
def test_train_spec_errors_exit_2_before_ray_starts(capsys, tmp_path, spec_text, flags, fragments):
    argv = ["train", *flags]
    if spec_text is not None:
        (tmp_path / "spec.yaml").write_text(spec_text)
        argv += ["--spec", str(tmp_path / "spec.yaml")]
    code = main(argv)
    assert_user_error(code, capsys.readouterr().err, *fragments)


def test_train_rejects_a_run_name_that_could_leave_the_storage_path(capsys):
    code = main(["train", "--name", "m", "--data", "no_such_data", "--run-name", "../../etc"])
    assert_user_error(code, capsys.readouterr().err, "invalid model name '../../etc'")


def test_train_with_a_missing_spec_file_exits_2(capsys, tmp_path):
    code = main(["train", "--spec", str(tmp_path / "nope.yaml")])
    assert_user_error(code, capsys.readouterr().err, "nope.yaml: spec file not found")


def test_jobs_train_is_n1v1_train():
    out = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / "train.py"), "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "usage: n1v1 train" in out.stdout and "--run-name" in out.stdout


def test_training_progress_lines_report_the_threshold_rule(capsys):
    from n1v1.cli.ml import print_progress

    done = {
        "event": "done",
        "name": "m",
        "version": "v0001",
        "threshold": 1.0,
        "metrics": {
            "best_epoch": 2,
            "epochs_run": 4,
            "val_loss": 0.5,
            "val_auc": 0.61,
            "val_net_return_at_threshold": 0.0,
        },
    }
    print_progress(done)
    print_progress(
        {
            **done,
            "threshold": 0.62,
            "metrics": {**done["metrics"], "val_net_return_at_threshold": 0.0125},
        }
    )
    first, second = capsys.readouterr().out.splitlines()
    assert "threshold 1.0000 (no edge after fees on validation: ml_signal will not trade)" in first
    assert "registered m/v0001" in first
    assert "threshold 0.6200 (validation net return +0.0125)" in second
