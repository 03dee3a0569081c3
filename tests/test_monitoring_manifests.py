"""kuberay/monitoring/ as a cluster would receive it: `kubectl kustomize` builds it, every
PodMonitor and PrometheusRule validates strictly against the prometheus-operator v0.93.0 CRDs
(../shared/crds, or the directory in $CRD_DIR), and the objects keep the shared contract: labels,
ports, the Grafana sidecar label, Ray's dashboards for the pinned Ray version.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import CRD_DIR_ENV, load_crds, problems
from monitoring_support import MONITORING, ray_pin, require_tool

from n1v1 import __version__
from n1v1.monitoring.alerts import rule_groups

LABELS = {
    "app.kubernetes.io/name": "n1v1",
    "app.kubernetes.io/part-of": "n1v1",
    "app.kubernetes.io/component": "monitoring",
    "app.kubernetes.io/version": __version__,
    "app.kubernetes.io/managed-by": "kustomize",
}


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def schemas(request: pytest.FixtureRequest) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The CRDs in $CRD_DIR, else ../shared's prometheus-operator v0.93.0 CRDs."""
    directory = os.environ.get(CRD_DIR_ENV)
    if directory:
        where = Path(directory)
    else:
        shared: Path = request.getfixturevalue("shared_dir")
        where = shared / "crds" / "prometheus-operator-v0.93.0"
    found = load_crds(where)
    assert ("monitoring.coreos.com", "v1", "PodMonitor") in found, f"no PodMonitor CRD in {where}"
    return found


def of_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_every_custom_resource_validates_strictly_against_the_crds(
    built: list[dict[str, Any]], schemas: dict[tuple[str, str, str], dict[str, Any]]
) -> None:
    custom = [o for o in built if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert sorted(o["kind"] for o in custom) == ["PodMonitor", "PodMonitor", "PrometheusRule"]
    assert [p for o in custom for p in problems(o, schemas)] == []


def test_the_validation_rejects_an_unknown_field_and_a_wrong_type(
    built: list[dict[str, Any]], schemas: dict[tuple[str, str, str], dict[str, Any]]
) -> None:
    """What a real API server would prune silently is an error here."""
    head = copy.deepcopy(of_kind(built, "PodMonitor")["n1v1-ray-head"])
    head["spec"]["podMetricsEndpoints"][0]["relabeling"] = []  # typo of `relabelings`
    head["spec"]["podMetricsEndpoints"][1]["port"] = 44217  # the CRD wants the port's name
    found = sorted(problems(head, schemas))
    assert found == [
        "PodMonitor n1v1-ray-head: spec.podMetricsEndpoints.0: Additional properties are not "
        "allowed ('relabeling' was unexpected)",
        "PodMonitor n1v1-ray-head: spec.podMetricsEndpoints.1.port: 44217 is not of type 'string'",
    ]


def test_every_object_carries_the_shared_labels(built: list[dict[str, Any]]) -> None:
    for obj in built:
        labels = obj["metadata"]["labels"]
        assert {k: labels.get(k) for k in LABELS} == LABELS, obj["metadata"]["name"]
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["labels"][0]["pairs"]["app.kubernetes.io/version"] == __version__


def test_pod_monitors_scrape_rays_ports_and_label_the_cluster(built: list[dict[str, Any]]) -> None:
    monitors = of_kind(built, "PodMonitor")
    relabel = {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_pod_label_ray_io_cluster"],
        "targetLabel": "ray_io_cluster",
    }
    expected = {
        "n1v1-ray-head": ("head", ["metrics", "as-metrics", "dash-metrics"]),
        "n1v1-ray-workers": ("worker", ["metrics"]),
    }
    assert set(monitors) == set(expected)
    for name, (node_type, ports) in expected.items():
        spec = monitors[name]["spec"]
        assert spec["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "n1v1",
            "ray.io/node-type": node_type,
        }
        assert [e["port"] for e in spec["podMetricsEndpoints"]] == ports
        assert all(e["relabelings"] == [relabel] for e in spec["podMetricsEndpoints"])


def test_the_prometheus_rule_holds_the_generated_groups(built: list[dict[str, Any]]) -> None:
    (rule,) = of_kind(built, "PrometheusRule").values()
    assert rule["spec"]["groups"] == rule_groups()
    plain = yaml.safe_load((MONITORING / "rules" / "n1v1-alerts.yaml").read_text())
    assert plain["groups"] == rule_groups()


def test_dashboards_ship_as_configmaps_for_grafanas_sidecar(built: list[dict[str, Any]]) -> None:
    maps = of_kind(built, "ConfigMap")
    uids = []
    for name, cm in maps.items():
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1", name
        ((key, text),) = cm["data"].items()
        doc = json.loads(text)
        assert key.endswith(".json") and doc["panels"] and doc["title"], name
        uids.append(doc["uid"])
    assert len(set(uids)) == len(uids) == 7
    ours = {n for n in maps if n.startswith("n1v1-dashboard-")}
    assert ours == {"n1v1-dashboard-trading", "n1v1-dashboard-serving", "n1v1-dashboard-training"}


def test_rays_dashboards_are_those_of_the_pinned_ray_and_say_so(
    built: list[dict[str, Any]],
) -> None:
    version = ray_pin()
    directory = MONITORING / "dashboards" / f"ray-{version}"
    files = sorted(p.name for p in directory.glob("*.json"))
    assert files == [
        "default_grafana_dashboard.json",
        "serve_deployment_grafana_dashboard.json",
        "serve_grafana_dashboard.json",
        "train_grafana_dashboard.json",
    ]
    notice = (directory / "NOTICE").read_text()
    assert f"Ray {version}" in notice and "Apache License, Version 2.0" in notice
    assert "Apache License" in (directory / "LICENSE").read_text()[:200]
    ray_maps = {n: cm for n, cm in of_kind(built, "ConfigMap").items() if n.startswith("ray-")}
    assert len(ray_maps) == 4
    for name, cm in ray_maps.items():
        assert name.startswith(f"ray-{version}-dashboard-")
        assert cm["metadata"]["labels"]["ray-version"] == version
        ((key, text),) = cm["data"].items()
        assert text == (directory / key).read_text()  # unchanged copies
    others = [d for d in (MONITORING / "dashboards").iterdir() if re.match(r"ray-[\d.]+$", d.name)]
    assert others == [directory], "dashboards of another Ray version are left behind"
