"""serve_config.yaml is a valid Serve config, with no key that Serve would silently ignore, and
its builder args and user_config pass our own strict models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from n1v1.live.config import LiveConfig, build_strategies, effective_settings
from n1v1.serve.args import AppArgs

CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"
DEPLOYMENTS = {"Gateway", "Engine", "Model"}


def unknown_keys(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: str) -> list[str]:
    """Keys in `value` that the JSON schema does not declare (Serve's models would drop them)."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"]
            found = [unknown_keys(value, s, defs, path) for s in options]
            return min(found, key=len) if found else []
    problems: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        for k, v in value.items():
            if k not in props:
                problems.append(f"{path}{k}")
            else:
                problems += unknown_keys(v, props[k], defs, f"{path}{k}.")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += unknown_keys(item, schema["items"], defs, f"{path}{i}.")
    return problems


def load() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def schema() -> tuple[dict[str, Any], dict[str, Any]]:
    from ray.serve.schema import ServeDeploySchema

    js = ServeDeploySchema.model_json_schema()
    return js, js.get("$defs", {})


def test_serve_config_validates_with_rays_schema() -> None:
    from ray.serve.schema import ServeDeploySchema

    parsed = ServeDeploySchema.model_validate(load())
    (app,) = parsed.applications
    assert (app.name, app.route_prefix, app.import_path) == (
        "n1v1",
        "/",
        "n1v1.serve.app:build_app",
    )


def test_serve_config_has_no_key_serve_would_ignore() -> None:
    js, defs = schema()
    assert unknown_keys(load(), js, defs, "") == []


def test_the_ignored_key_check_catches_a_typo() -> None:
    js, defs = schema()
    doc = load()
    doc["applications"][0]["deployments"][0]["user_confg"] = {}
    doc["http_options"]["prot"] = 1
    assert unknown_keys(doc, js, defs, "") == [
        "http_options.prot",
        "applications.0.deployments.0.user_confg",
    ]


def test_builder_args_are_valid_and_strict() -> None:
    args = AppArgs.model_validate(load()["applications"][0]["args"])
    assert {s.slot_id for s in args.strategies} >= {"ema_cross", "rsi", "ml_signal"}
    with pytest.raises(ValueError, match="max_drawdwn"):
        AppArgs.model_validate({**load()["applications"][0]["args"], "risk": {"max_drawdwn": 1}})


def test_deployment_names_and_user_config_are_real() -> None:
    app = load()["applications"][0]
    assert {d["name"] for d in app["deployments"]} <= DEPLOYMENTS
    (engine,) = [d for d in app["deployments"] if d["name"] == "Engine"]
    live = LiveConfig.model_validate(engine["user_config"])
    args = AppArgs.model_validate(app["args"])
    settings = effective_settings(args.settings(), live)
    rules = [s for s in args.strategies if s.name != "ml_signal"]  # no model needed for these
    live_rules = live.model_copy(
        update={
            "strategies": {
                k: v for k, v in live.strategies.items() if k in {s.slot_id for s in rules}
            }
        }
    )
    assert set(build_strategies(rules, live_rules, settings)) == {s.slot_id for s in rules}
