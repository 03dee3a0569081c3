"""The model registry: layout and checksums, half-written versions, promotion gate, history and
rollback, name/version validation, and corrupt-file rejection."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from n1v1.ml import registry as registry_module
from n1v1.ml.models import ModelSpec, build_model, read_state_dict
from n1v1.ml.registry import ModelRegistry, PromotionRejected, RegistryError
from n1v1.ml.scaling import Standardizer

F = 3


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    return build_model(ModelSpec(hidden=(4,)), F, 2, seed=0).state_dict()


@pytest.fixture(scope="module")
def scaler() -> dict:
    rows = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 5.0]])
    return Standardizer().fit(rows).to_dict()


# What the baseline gate reads besides val_auc. 500 + 500 validation rows at horizon 1: under "no
# discrimination" the AUC's sd is sqrt(1001 / (12 * 500 * 500)) = 0.01827, so AUC 0.55 is
# z = 2.74 (p = 0.003) above chance; ml_signal +2 % beats buy-and-hold +1 % and cash.
BASELINE = {
    "label_spec": {"horizon": 1},
    "split": {"val_class_counts": [500, 500]},
}
ECONOMIC = {"val_return": 0.02, "val_buy_and_hold_return": 0.01}


def _card(val_auc: float | None = 0.6, **metrics: float) -> dict:
    card = {
        "model_spec": ModelSpec(hidden=(4,)).model_dump(),
        "n_features": F,
        "n_classes": 2,
        "feature_spec": {},
        **BASELINE,
        "metrics": {**ECONOMIC, **metrics},
    }
    if val_auc is not None:
        card["metrics"]["val_auc"] = val_auc
    return card


@pytest.fixture
def reg(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models")


@pytest.fixture
def register(reg, state_dict, scaler):
    def _register(name: str = "m", val_auc: float | None = 0.6, **metrics: float) -> str:
        card = _card(val_auc, **metrics)
        return reg.register(name, state_dict=state_dict, scaler=scaler, card=card)

    return _register


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _reseal(version_dir: Path, filename: str, content: bytes) -> None:
    """Rewrite a file AND its checksums, as a buggy writer would: only parsing can catch it."""
    (version_dir / filename).write_bytes(content)
    if filename != "card.json":
        card = json.loads((version_dir / "card.json").read_text())
        card["files"][filename] = _sha(version_dir / filename)
        (version_dir / "card.json").write_text(json.dumps(card))
    (version_dir / "COMPLETE").write_text(_sha(version_dir / "card.json"))


# ---- layout -------------------------------------------------------------------------------------


def test_register_writes_weights_scaler_card_and_complete_with_checksums(reg, register, state_dict):
    assert register() == "v0001"
    assert register() == "v0002"
    vdir = reg.root / "m" / "v0001"
    assert sorted(p.name for p in vdir.iterdir()) == [
        "COMPLETE",
        "card.json",
        "model.pt",
        "scaler.json",
    ]
    card = json.loads((vdir / "card.json").read_text())
    assert card["version"] == "v0001" and card["name"] == "m"
    assert card["files"] == {
        "model.pt": _sha(vdir / "model.pt"),
        "scaler.json": _sha(vdir / "scaler.json"),
    }
    assert (vdir / "COMPLETE").read_text().strip() == _sha(vdir / "card.json")
    assert card["created_at"] and card["registered_at"]
    loaded = read_state_dict(vdir / "model.pt")
    assert loaded.keys() == state_dict.keys()
    assert all(torch.equal(loaded[k], state_dict[k]) for k in state_dict)
    assert not [p for p in (reg.root / "m").iterdir() if p.name.startswith(".staging")]


def test_list_models_and_versions_oldest_first(reg, register):
    assert reg.list_models() == []
    register("beta", 0.6)
    register("alpha", 0.6)
    register("alpha", 0.7)
    reg.promote("alpha", "v0001")
    assert reg.list_models() == ["alpha", "beta"]
    rows = reg.list_versions("alpha")
    assert [(r["version"], r["promoted"]) for r in rows] == [("v0001", True), ("v0002", False)]
    assert rows[1]["metrics"] == {**ECONOMIC, "val_auc": 0.7} and rows[1]["kind"] == "mlp"


def test_resolve_aliases(reg, register):
    register(), register()
    assert reg.resolve("m", "latest") == "v0002"
    assert reg.resolve("m", "v0001") == "v0001"
    with pytest.raises(RegistryError, match="'m' has no promoted version"):
        reg.resolve("m")
    reg.promote("m", "v0001")
    assert reg.resolve("m") == "v0001" and reg.card("m")["version"] == "v0001"
    assert reg.files("m", "v0002") == reg.root / "m" / "v0002"


def test_unknown_model_and_version_are_named(reg, register):
    register()
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        reg.resolve("nope", "latest")
    with pytest.raises(RegistryError, match="has no version 'v0099'"):
        reg.card("m", "v0099")
    with pytest.raises(RegistryError, match="'v0099'"):
        reg.promote("m", "v0099")


# ---- half-written versions ----------------------------------------------------------------------


def test_a_version_without_complete_can_never_be_resolved_or_promoted(reg, register):
    register()
    half = reg.root / "m" / "v0002"
    shutil.copytree(reg.root / "m" / "v0001", half)
    (half / "COMPLETE").unlink()  # a writer died before the marker
    for call in (lambda: reg.resolve("m", "v0002"), lambda: reg.promote("m", "v0002", force=True)):
        with pytest.raises(RegistryError, match=r"m/v0002 is incomplete"):
            call()
    assert reg.resolve("m", "latest") == "v0001"
    assert [r["version"] for r in reg.list_versions("m")] == ["v0001"]
    assert register() == "v0003"  # the dead writer's number is never reused


def test_a_leftover_staging_directory_is_invisible(reg, register):
    register()
    shutil.copytree(reg.root / "m" / "v0001", reg.root / "m" / ".staging-deadbeef")
    assert [r["version"] for r in reg.list_versions("m")] == ["v0001"]
    with pytest.raises(RegistryError, match=r"invalid version '\.staging-deadbeef'"):
        reg.resolve("m", ".staging-deadbeef")


@pytest.mark.parametrize("damaged", ["model.pt", "scaler.json", "card.json"])
def test_a_checksum_mismatch_blocks_resolve_load_and_promote(reg, register, damaged):
    register()
    path = reg.root / "m" / "v0001" / damaged
    path.write_bytes(path.read_bytes() + b" ")
    for call in (
        lambda: reg.resolve("m", "v0001"),
        lambda: reg.files("m", "v0001"),
        lambda: reg.promote("m", "v0001", force=True),
    ):
        with pytest.raises(RegistryError, match=rf"{damaged}: checksum does not match"):
            call()
    [row] = reg.list_versions("m")
    assert "checksum does not match" in row["error"]
    assert reg.promoted_version("m") is None


@pytest.mark.parametrize("failing_file", ["model.pt", "card.json", "COMPLETE"])
def test_a_crash_inside_register_leaves_no_visible_version(
    reg, register, monkeypatch, failing_file
):
    real_write = registry_module._write_bytes

    def crashing_write(path: Path, data: bytes) -> None:
        if path.name == failing_file:
            raise OSError("disk full (simulated)")
        real_write(path, data)

    monkeypatch.setattr(registry_module, "_write_bytes", crashing_write)
    with pytest.raises(OSError, match="simulated"):
        register()
    assert reg.list_versions("m") == []
    assert list((reg.root / "m").iterdir()) == []  # no staging dir, no claimed number
    with pytest.raises(RegistryError, match="no complete version"):
        reg.resolve("m", "latest")
    monkeypatch.setattr(registry_module, "_write_bytes", real_write)
    assert register() == "v0001"


def test_concurrent_registrations_get_distinct_numbers(reg, register):
    versions: list[str] = []
    threads = [threading.Thread(target=lambda: versions.append(register())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [f"v{i:04d}" for i in range(1, 9)]
    assert len(reg.list_versions("m")) == 8


# ---- promotion gate, pointer and history --------------------------------------------------------


def test_promotion_gate_needs_the_margin(reg, register):
    # Margin 0.125 and AUCs exactly representable in binary, so the boundaries are exact:
    # v0001 0.625 (first: only chance to beat, 0.5 + 0.125); v0002 0.7499 < 0.625 + 0.125
    # rejected; v0003 0.75 accepted.
    register(val_auc=0.625), register(val_auc=0.7499), register(val_auc=0.75)
    first = reg.promote("m", "v0001", margin=0.125)
    assert first["previous"] is None and first["forced"] is False
    with pytest.raises(PromotionRejected) as err:
        reg.promote("m", "v0002", margin=0.125)
    assert "val_auc=0.749900" in str(err.value) and "val_auc=0.625000" in str(err.value)
    assert reg.promoted_version("m") == "v0001"
    record = reg.promote("m", "v0003", margin=0.125)
    assert (record["version"], record["previous"], record["value"], record["previous_value"]) == (
        "v0003",
        "v0001",
        0.75,
        0.625,
    )
    assert (reg.root / "m" / "PROMOTED").read_text() == "v0003\n"


def test_force_overrides_the_gate_and_is_recorded(reg, register):
    register(val_auc=0.8), register(val_auc=0.6)
    reg.promote("m", "v0001")
    record = reg.promote("m", "v0002", force=True)
    assert record["forced"] is True and reg.promoted_version("m") == "v0002"
    assert [h["forced"] for h in reg.history("m")] == [False, True]


def test_a_missing_metric_is_rejected_unless_forced(reg, register):
    register(val_auc=None)
    with pytest.raises(PromotionRejected, match=r"no finite metrics\['val_auc'\]"):
        reg.promote("m", "v0001")
    assert reg.promote("m", "v0001", force=True)["value"] is None


# ---- the baseline gate: what the first version must beat too -------------------------------------
def test_a_first_version_worse_than_chance_is_rejected(reg, register):
    # the demo's complaint: AUC 0.477 had nothing to beat and was promoted
    register(val_auc=0.477)
    with pytest.raises(PromotionRejected) as err:
        reg.promote("m", "v0001")
    message = str(err.value)
    assert "fails the baseline gate" in message
    # z = (0.477 - 0.5) / 0.01827 = -1.26, p = P(Z >= -1.26) = 0.896
    assert "val_auc 0.4770 not above chance (needs >= 0.5050" in message
    assert "p = 0.896, z = -1.26" in message
    assert reg.promoted_version("m") is None


def test_an_auc_above_the_margin_but_not_significant_is_rejected(reg, state_dict, scaler):
    # 0.55 on 40 + 40 validation rows at horizon 4: m1 = m0 = 10 independent rows, variance
    # (10 + 10 + 1) / (12 * 10 * 10) = 0.0175, sd 0.1323, z = 0.05 / 0.1323 = 0.38, p = 0.353
    card = _card(0.55)
    card["label_spec"] = {"horizon": 4}
    card["split"] = {"val_class_counts": [40, 40]}
    reg.register("m", state_dict=state_dict, scaler=scaler, card=card)
    with pytest.raises(PromotionRejected, match=r"p = 0\.353, z = 0\.38 on 80 validation rows"):
        reg.promote("m", "v0001")


def test_a_version_that_does_not_beat_buy_and_hold_is_rejected(reg, register):
    # +1.0 % net on validation while buy-and-hold made +3.05 %
    register(val_auc=0.6, val_return=0.01, val_buy_and_hold_return=0.0305)
    with pytest.raises(PromotionRejected, match=r"ml_signal \+1\.00% does not beat buy-and-hold"):
        reg.promote("m", "v0001")


def test_a_losing_version_is_rejected_even_when_buy_and_hold_lost_more(reg, register):
    # -1 % beats buy-and-hold's -5 % but not cash (0 %): standing aside was better
    register(val_auc=0.6, val_return=-0.01, val_buy_and_hold_return=-0.05)
    with pytest.raises(PromotionRejected, match=r"does not beat buy-and-hold -5\.00% and cash"):
        reg.promote("m", "v0001")


def test_a_card_without_the_baseline_evidence_is_rejected(reg, state_dict, scaler):
    card = {k: v for k, v in _card(0.7).items() if k not in ("split", "label_spec")}
    card["metrics"] = {"val_auc": 0.7}
    reg.register("m", state_dict=state_dict, scaler=scaler, card=card)
    with pytest.raises(PromotionRejected) as err:
        reg.promote("m", "v0001")
    assert "lacks split.val_class_counts" in str(err.value)
    assert "lacks metrics val_return" in str(err.value)


def test_a_later_version_must_clear_the_baseline_too(reg, register):
    register(val_auc=0.6), register(val_auc=0.7, val_return=-0.01)
    reg.promote("m", "v0001")
    with pytest.raises(PromotionRejected, match="v0002 fails the baseline gate"):
        reg.promote("m", "v0002")


def test_forcing_over_a_failed_gate_records_what_failed(reg, register):
    register(val_auc=0.477)
    record = reg.promote("m", "v0001", force=True)
    assert record["forced"] is True and reg.promoted_version("m") == "v0001"
    assert [f.split(":")[0] for f in record["failed_gate"]] == ["chance"]
    assert reg.history("m")[-1]["failed_gate"] == record["failed_gate"]
    status, checks = reg.gate_status("m", "v0001")
    assert status == "forced, failed gate: chance"
    assert [(c.name, c.passed) for c in checks] == [("chance", False), ("buy_and_hold", True)]


def test_a_version_that_passes_has_status_passed(reg, register):
    register(val_auc=0.55)
    assert reg.gate_status("m", "v0001")[0] == "passed"
    assert reg.promote("m", "v0001")["failed_gate"] == []


def test_promoting_the_promoted_version_again_is_rejected(reg, register):
    register()
    reg.promote("m", "v0001")
    with pytest.raises(PromotionRejected, match="already the promoted version"):
        reg.promote("m", "v0001")


def test_the_pointer_is_replaced_atomically(reg, register, monkeypatch):
    register(val_auc=0.6), register(val_auc=0.9)
    reg.promote("m", "v0001")

    def failing_replace(src, dst):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(registry_module.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        reg.promote("m", "v0002")
    assert (reg.root / "m" / "PROMOTED").read_text() == "v0001\n"  # old pointer intact
    assert not [p for p in (reg.root / "m").iterdir() if ".tmp-" in p.name]


def test_rollback_walks_back_through_the_promotion_history(reg, register):
    for auc in (0.55, 0.6, 0.7):
        register(val_auc=auc)
    for version in ("v0001", "v0002", "v0003"):
        reg.promote("m", version)
    assert reg.rollback("m") == "v0002"
    assert reg.rollback("m") == "v0001"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback("m")
    reg.promote("m", "v0003")
    assert reg.rollback("m") == "v0001"
    history = reg.history("m")
    assert [(h["action"], h["version"], h["previous"]) for h in history] == [
        ("promote", "v0001", None),
        ("promote", "v0002", "v0001"),
        ("promote", "v0003", "v0002"),
        ("rollback", "v0002", "v0003"),
        ("rollback", "v0001", "v0002"),
        ("promote", "v0003", "v0001"),
        ("rollback", "v0001", "v0003"),
    ]


def test_rollback_without_a_promotion_fails(reg, register):
    register()
    with pytest.raises(RegistryError, match="no promoted version to roll back"):
        reg.rollback("m")


def test_rollback_refuses_a_damaged_previous_version(reg, register):
    register(val_auc=0.6), register(val_auc=0.9)
    reg.promote("m", "v0001"), reg.promote("m", "v0002")
    (reg.root / "m" / "v0001" / "COMPLETE").unlink()
    with pytest.raises(RegistryError, match="m/v0001 is incomplete"):
        reg.rollback("m")
    assert reg.promoted_version("m") == "v0002"


def test_a_corrupt_history_line_is_named(reg, register):
    register()
    reg.promote("m", "v0001")
    with (reg.root / "m" / "promotions.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(RegistryError, match=r"promotions\.jsonl:2: invalid JSON"):
        reg.rollback("m")


# ---- names, versions, traversal -----------------------------------------------------------------

BAD_NAMES = ["../x", "a/b", "..", ".", "/etc", "", "Upper", "x\n", "-x", "a" * 65, None, 5]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_model_names_are_rejected_naming_the_value(reg, state_dict, scaler, bad):
    calls = [
        lambda: reg.register(bad, state_dict=state_dict, scaler=scaler, card=_card()),
        lambda: reg.resolve(bad, "latest"),
        lambda: reg.promote(bad, "v0001", force=True),
        lambda: reg.rollback(bad),
        lambda: reg.list_versions(bad),
    ]
    for call in calls:
        with pytest.raises(RegistryError, match="invalid model name " + re.escape(repr(bad))):
            call()
    assert not reg.root.exists() or reg.list_models() == []


@pytest.mark.parametrize("bad", ["../v0001", "v1", "v0001/..", "/v0001", "V0001", "v0001\n", 1])
def test_bad_versions_are_rejected_naming_the_value(reg, register, bad):
    register()
    for call in (lambda: reg.resolve("m", bad), lambda: reg.promote("m", bad, force=True)):
        with pytest.raises(RegistryError, match="invalid version " + re.escape(repr(bad))):
            call()


def test_symlinks_out_of_the_root_are_refused(tmp_path, register, reg):
    register("m")
    outside = tmp_path / "outside"
    shutil.copytree(reg.root / "m", outside)  # a complete, valid-looking model elsewhere
    os.symlink(outside, reg.root / "evil")
    with pytest.raises(RegistryError, match=r"model 'evil' resolves to .*outside the registry"):
        reg.resolve("evil", "v0001")
    assert reg.list_models() == ["m"]
    os.symlink(outside / "v0001", reg.root / "m" / "v0002")
    with pytest.raises(RegistryError, match=r"version m/v0002 resolves to .*outside the registry"):
        reg.resolve("m", "v0002")
    os.symlink("/etc/hostname", reg.root / "m" / "v0001" / "extra")
    _reseal(reg.root / "m" / "v0001", "card.json", _card_with_extra_file(reg.root / "m" / "v0001"))
    with pytest.raises(RegistryError, match=r"m/v0001/extra resolves to .*outside the registry"):
        reg.resolve("m", "v0001")


def _card_with_extra_file(vdir: Path) -> bytes:
    card = json.loads((vdir / "card.json").read_text())
    card["files"]["extra"] = "0" * 64
    return json.dumps(card).encode()


def test_a_tampered_pointer_is_named(reg, register):
    register()
    (reg.root / "m" / "PROMOTED").write_text("../../etc\n")
    with pytest.raises(RegistryError, match=r"PROMOTED: invalid version '\.\./\.\./etc'"):
        reg.resolve("m")


ZERO = "0" * 64


# ---- corrupt card -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "card.json: invalid JSON"),
        (b"[1, 2]", "card.json: expected a JSON object, got list"),
        (b'{"version": 3, "files": {}}', "card.json: 'version' is 3"),
        (b'{"version": "v0001", "files": "x"}', "card.json: 'files' must map"),
        (
            b'{"version": "v0001", "files": {"model.pt": 1, "scaler.json": 2}}',
            "card.json: 'files' entry 'model.pt'",
        ),
        (
            json.dumps(
                {"version": "v0001", "files": {"../x": ZERO, "model.pt": ZERO, "scaler.json": ZERO}}
            ).encode(),
            r"card.json: 'files' entry '\.\./x'",
        ),
    ],
)
def test_a_corrupt_card_is_named(reg, register, content, message):
    register()
    _reseal(reg.root / "m" / "v0001", "card.json", content)
    with pytest.raises(RegistryError, match=message):
        reg.card("m", "v0001")


# ---- register input checks ----------------------------------------------------------------------


def test_register_rejects_bad_inputs_before_writing_anything(reg, state_dict, scaler):
    bad_state = {**state_dict, "extra": [1, 2]}
    with pytest.raises(RegistryError, match=r"state_dict\['extra'\] is list"):
        reg.register("m", state_dict=bad_state, scaler=scaler, card=_card())
    with pytest.raises(RegistryError, match="scaler: 'scale'"):
        reg.register(
            "m", state_dict=state_dict, scaler={**scaler, "scale": [1, 0, 1]}, card=_card()
        )
    with pytest.raises(RegistryError, match="card name is 'other'"):
        reg.register("m", state_dict=state_dict, scaler=scaler, card={**_card(), "name": "other"})
    with pytest.raises(RegistryError, match="not JSON"):
        reg.register("m", state_dict=state_dict, scaler=scaler, card={**_card(), "x": {1, 2}})
    assert not reg.root.exists()
