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
ECONOMIC = {"val_return": 0.02, "val_buy_and_hold_return": 0.01}  # +2 % vs buy-and-hold +1 %


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
            "metrics": {"val_auc": auc, "val_loss": 0.69 - i / 100, **ECONOMIC},
            "threshold": 0.5,
            # the baseline gate's evidence: AUC 0.55 on 500 + 500 rows at horizon 1 is
            # z = 0.05 / sqrt(1001 / (12 * 500 * 500)) = 2.74 above chance
            "label_spec": {"horizon": 1},
            "split": {"val_class_counts": [500, 500]},
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
    assert (
        out.startswith("btc_mlp/v0002: gate passed\n") and "feature_hash: 0123456789abcdef" in out
    )
    assert "  chance: PASS: val_auc 0.5520 above chance" in out
    assert "  buy_and_hold: PASS: ml_signal +2.00% beats buy-and-hold +1.00% and cash" in out
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


def test_training_progress_lines_give_every_figure_a_unit(capsys):
    from n1v1.cli.ml import print_progress

    backtest = {
        "start": "2017-09-04T18:48:00+00:00",
        "end": "2017-12-17T23:44:00+00:00",
        "bars": 1662,
        "sessions": 2,
        "fee": 0.001,
        "strategy": {"total_return": -0.0015, "n_trades": 4, "fees_paid": 80.0},
        "buy_and_hold": {"total_return": 0.0305, "n_trades": 2, "fees_paid": 20.0},
    }
    done = {
        "event": "done",
        "name": "m",
        "version": "v0001",
        "threshold": 1.0,
        "horizon": 15,
        "validation_backtest": backtest,
        "metrics": {
            "best_epoch": 2,
            "epochs_run": 4,
            "val_loss": 0.5,
            "val_auc": 0.61,
            "val_net_return_at_threshold": 0.0,
        },
    }
    print_progress(done)
    print_progress({**done, "threshold": 0.62, "version": None})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "best epoch 2 of 4: val_loss 0.50000, val_auc 0.6100; threshold 1.0000 (no edge after "
        "fees on validation: ml_signal will not trade)"
    )
    # returns are fractions on the card: -0.0015 -> -0.15 %, 0.0305 -> +3.05 %, fee 0.001 -> 0.10 %
    validation = (
        "validation backtest 2017-09-04 18:48 .. 2017-12-17 23:44 (1,662 bars, 2 sessions, "
        "0.10% fee per fill): ml_signal -0.15% net (4 trades), buy-and-hold +3.05% net"
    )
    assert lines[1] == validation and lines[2] == "registered m/v0001"
    assert (
        lines[3].startswith("best epoch 2 of 4")
        and "threshold 0.6200 (ml_signal goes long" in (lines[3])
    )
    assert "15-bar forward returns" in lines[3]
    assert lines[4] == validation and lines[5] == "not registered"
    assert "net return +" not in "\n".join(lines)  # the unitless "+49.4" of issue 9 is gone


# -- the gate in list / show / promote ---------------------------------------------------------
def test_a_forced_promotion_over_a_failed_gate_is_shown_as_such(capsys, registry):
    worse = registry.card("btc_mlp", "v0001")
    state = build_model(ModelSpec(hidden=(4,)), 3, 2, seed=9).state_dict()
    scaler = Standardizer().fit(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])).to_dict()
    card = {k: v for k, v in worse.items() if k not in ("version", "files", "registered_at")}
    card["metrics"] = {**card["metrics"], "val_auc": 0.477}  # the demo model of issue 9
    registry.register("btc_mlp", state_dict=state, scaler=scaler, card=card)  # v0004
    code, _, err = run(capsys, registry, "models", "promote", "btc_mlp", "v0004")
    assert_user_error(
        code, err, "btc_mlp/v0004 fails the baseline gate", "val_auc 0.4770 not above"
    )
    code, out, _ = run(capsys, registry, "models", "promote", "btc_mlp", "v0004", "--force")
    assert code == 0 and "[forced, failed gate: chance: val_auc 0.4770 not above chance" in out
    code, out, _ = run(capsys, registry, "models", "list", "btc_mlp")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("v000")}
    assert rows["v0004"].rstrip().endswith("forced, failed gate: chance")
    assert rows["v0003"].rstrip().endswith("passed")
    code, out, _ = run(capsys, registry, "models", "list")
    assert "v0004 (forced, failed gate: chance)" in out
    code, out, _ = run(capsys, registry, "models", "show", "btc_mlp")
    assert out.startswith("btc_mlp/v0004 (promoted): gate forced, failed gate: chance\n")
    assert "  chance: FAIL: val_auc 0.4770 not above chance" in out


# -- n1v1 paper: what the ml_signal slot trades, said plainly -------------------------------------
def slot_doc(registry: ModelRegistry, version: str) -> dict:
    strategies = [
        {"name": "rsi", "params": {}},
        {"name": "ml_signal", "params": {"model": "btc_mlp", "version": version}},
    ]
    return {"model_root": str(registry.root), "strategies": strategies}


def test_paper_says_plainly_when_its_ml_slot_trades_an_unvalidated_model(capsys, registry):
    from n1v1.cli.paper import _ensure_models

    bad = registry.card("btc_mlp", "v0001")
    card = {k: v for k, v in bad.items() if k not in ("version", "files", "registered_at")}
    card["metrics"] = {**card["metrics"], "val_return": -0.0015, "val_buy_and_hold_return": 0.0305}
    state = build_model(ModelSpec(hidden=(4,)), 3, 2, seed=5).state_dict()
    scaler = Standardizer().fit(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])).to_dict()
    registry.register("btc_mlp", state_dict=state, scaler=scaler, card=card)  # v0004
    (line,) = _ensure_models(slot_doc(registry, "v0004"), allow_train=False)
    assert line.startswith(
        "WARNING: ml_signal trades btc_mlp/v0004, an UNVALIDATED model: it failed the promotion "
        "gate (buy_and_hold: ml_signal -0.15% does not beat buy-and-hold +3.05%"
    )
    assert "its orders show the ML path at work, not an edge" in line
    assert line in capsys.readouterr().out
    assert registry.promoted_version("btc_mlp") is None  # nothing was forced


def test_paper_names_a_validated_model_and_never_trains_with_no_train(capsys, registry):
    from n1v1.cli.paper import _ensure_models
    from n1v1.ml.registry import RegistryError

    registry.promote("btc_mlp", "v0003")
    (line,) = _ensure_models(slot_doc(registry, "v0003"), allow_train=False)
    assert line == (
        "ml_signal trades btc_mlp/v0003: it passed the promotion gate and is the promoted version."
    )
    with pytest.raises(RegistryError, match=r"btc_mlp v0042 is not in .* \(and --no-train\)"):
        _ensure_models(slot_doc(registry, "v0042"), allow_train=False)
