"""The RayService's serveConfigV2 (kuberay/base/serve-config.yaml): generated from serve_config.yaml
by `n1v1 kube serve-config`, never stale, loadable by Ray's own Serve schema with no key Serve
would ignore, accepted by our AppArgs, and different from serve_config.yaml by exactly the
documented cluster changes (n1v1/kube.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_serve_config import schema, unknown_keys

from n1v1.cli import main
from n1v1.config import ConfigError
from n1v1.kube import ENGINE_RESOURCE, STORE_URL_PLACEHOLDER, cluster_serve_config
from n1v1.kube import render_serve_config_patch as render
from n1v1.serve.args import AppArgs

ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = ROOT / "serve_config.yaml"
PATCH = ROOT / "kuberay" / "base" / "serve-config.yaml"


def generated() -> dict[str, Any]:
    return yaml.safe_load(yaml.safe_load(PATCH.read_text())["spec"]["serveConfigV2"])


def test_the_committed_patch_is_what_the_command_generates() -> None:
    assert PATCH.read_text() == render(SERVE_CONFIG), (
        "kuberay/base/serve-config.yaml is stale: run `n1v1 kube serve-config`"
    )


def test_the_command_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, out = tmp_path / "serve_config.yaml", tmp_path / "serve-config.yaml"
    config.write_text(SERVE_CONFIG.read_text())
    check = ["kube", "serve-config", "--config", str(config), "--out", str(out), "--check"]
    assert main(check) == 1  # nothing written yet
    assert main(check[:-1]) == 0 and out.read_text() == PATCH.read_text()
    assert main(check) == 0
    config.write_text(SERVE_CONFIG.read_text().replace("fast: 12}}", "fast: 10}}"))
    assert main(check) == 1
    assert "is out of date with" in capsys.readouterr().err
    assert main(check[:-1]) == 0 and main(check) == 0
    written = yaml.safe_load(yaml.safe_load(out.read_text())["spec"]["serveConfigV2"])
    (app,) = written["applications"]
    engine = [d for d in app["deployments"] if d["name"] == "Engine"]
    assert engine[0]["user_config"]["strategies"] == {"ema_cross": {"fast": 10}}


def test_it_loads_through_rays_serve_schema_with_no_ignored_key() -> None:
    from ray.serve.schema import ServeDeploySchema

    config = generated()
    parsed = ServeDeploySchema.model_validate(config)
    assert [a.import_path for a in parsed.applications] == ["n1v1.serve.app:build_app"]
    js, defs = schema()
    assert unknown_keys(config, js, defs, "") == []


def test_its_builder_args_pass_our_strict_model() -> None:
    (app,) = generated()["applications"]
    args = AppArgs.model_validate(app["args"])
    assert args.store_url == STORE_URL_PLACEHOLDER and args.model_root == "/mnt/n1v1/models"
    assert args.upload_dir == "/mnt/n1v1/uploads"  # on the volume every pod mounts


def paths(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf path -> value (list items by index, deployments by name)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= paths(v, f"{prefix}{k}.")
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            key = v["name"] if isinstance(v, dict) and "name" in v else i
            out |= paths(v, f"{prefix}{key}.")
        return out
    return {prefix.rstrip("."): value}


def test_it_differs_from_serve_config_by_exactly_the_cluster_changes() -> None:
    before = paths(yaml.safe_load(SERVE_CONFIG.read_text()))
    after = paths(generated())
    changed = {
        k: (before.get(k), after.get(k)) for k in before | after if before.get(k) != after.get(k)
    }
    app = "applications.n1v1."
    assert changed == {
        "http_options.host": ("127.0.0.1", "0.0.0.0"),
        f"{app}args.store_url": ("sqlite:///var/n1v1.db", STORE_URL_PLACEHOLDER),
        f"{app}args.model_root": ("var/models", "/mnt/n1v1/models"),
        f"{app}args.upload_dir": ("var/uploads", "/mnt/n1v1/uploads"),
        f"{app}deployments.Engine.num_replicas": (None, 1),
        f"{app}deployments.Engine.ray_actor_options.num_cpus": (None, 1),
        f"{app}deployments.Engine.ray_actor_options.resources.{ENGINE_RESOURCE}": (None, 1),
        f"{app}deployments.Gateway.name": (None, "Gateway"),
        f"{app}deployments.Gateway.ray_actor_options.num_cpus": (None, 0.25),
        f"{app}deployments.Model.name": (None, "Model"),
        f"{app}deployments.Model.ray_actor_options.num_cpus": (None, 0.5),
    }


def test_the_placeholder_store_url_can_never_be_reached() -> None:
    from sqlalchemy.engine import make_url

    # .invalid is reserved (RFC 2606): it never resolves, so a pod without the Secret fails loudly
    # instead of writing a private database; and it holds no password.
    url = make_url(STORE_URL_PLACEHOLDER)
    assert url.host is not None and url.host.endswith(".invalid") and url.password is None


def config_with(**engine: Any) -> dict[str, Any]:
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    config["applications"][0]["deployments"][0].update(engine)
    return config


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"num_replicas": 2}, "deployments.0.num_replicas: the cluster sets it for Engine"),
        ({"autoscaling_config": {"max_replicas": 2}}, "Engine runs exactly one replica"),
        ({"ray_actor_options": {"num_cpus": 0}}, "deployments.0.ray_actor_options: the cluster"),
        ({"name": "Engin"}, "deployments.0.name: 'Engin' is not one of"),
    ],
)
def test_it_refuses_what_only_the_cluster_may_decide(engine: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cluster_serve_config(config_with(**engine))


def test_it_refuses_code_fetched_at_run_time_and_bad_args() -> None:
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    config["applications"][0]["runtime_env"] = {"working_dir": "https://example.com/x.zip"}
    with pytest.raises(ConfigError, match=r"applications\.0\.runtime_env: the image carries"):
        cluster_serve_config(config)
    config = yaml.safe_load(SERVE_CONFIG.read_text())
    config["applications"][0]["args"]["risk"]["max_drawdwn"] = 0.1
    with pytest.raises(ConfigError, match="max_drawdwn"):
        cluster_serve_config(config)


def test_serve_config_yaml_points_at_what_exists() -> None:
    header = SERVE_CONFIG.read_text().split("proxy_location")[0]
    assert "the RayService in kuberay/" in " ".join(header.replace("#", " ").split())
    assert (ROOT / "kuberay" / "base" / "rayservice.yaml").is_file()
