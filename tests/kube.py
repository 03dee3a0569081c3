"""Offline checks of Kubernetes manifests: build them with kustomize, validate custom resources
against their CRDs' openAPIV3Schema in strict mode, and built-in kinds against the Kubernetes
OpenAPI schemas bundled by `kubernetes-validate` (pinned in pyproject's dev extra).

Strict mode: a real API server prunes a field its schema does not declare, silently, so a typo in
a manifest (`rayStartParam:`) would simply vanish. Here an undeclared field is an error, except
under `x-kubernetes-preserve-unknown-fields`. The CRD dialect differs from plain JSON Schema in
three ways handled below: `x-kubernetes-int-or-string` (an integer or a string), `nullable`
(null allowed) and that an object schema without `properties` or `additionalProperties` keeps no
field at all. CEL rules (`x-kubernetes-validations`) are not evaluated: no API server here.
"""

from __future__ import annotations

import copy
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from project import require_tool

ROOT = Path(__file__).resolve().parents[1]
KUBERAY = ROOT / "kuberay"
CRD_DIR_ENV = "CRD_DIR"  # not N1V1_*: that prefix is the settings namespace
K8S_VERSION = "1.32"  # the Kubernetes API the built-in kinds are checked against
BUILDS = {  # kustomization -> namespace it sets
    "overlays/dev": "n1v1-dev",
    "overlays/prod": "n1v1",
    "overlays/dev/jobs": "n1v1-dev",
    "overlays/prod/jobs": "n1v1",
}


@cache
def build(kustomization: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize kuberay/<kustomization>`, as objects."""
    kubectl = require_tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(KUBERAY / kustomization)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"kubectl kustomize kuberay/{kustomization}:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def load_crds(directory: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> openAPIV3Schema, from every CRD file under `directory`."""
    schemas = {}
    # libyaml's parser where PyYAML has it (the same safe loader, parsed in C): the CRDs are
    # megabytes of YAML, seconds to parse in pure Python
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for path in sorted(directory.rglob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (spec["group"], version["name"], spec["names"]["kind"])
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema as plain JSON Schema, with undeclared fields forbidden."""
    out = copy.deepcopy(schema)
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out:
        out["properties"] = {k: strict_schema(v) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = strict_schema(out["additionalProperties"])
    elif out.get("type") in ("object", ["object", "null"]) and not preserve:
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in out:
            out[key] = [strict_schema(s) for s in out[key]]
    return out


OBJECT_META = {  # what a manifest may say in metadata (the API server validates it separately)
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def crd_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every way `obj` breaks its CRD's schema in strict mode, as `path: message`."""
    strict = strict_schema(schema)
    strict["properties"]["metadata"] = OBJECT_META
    validator = jsonschema.Draft202012Validator(strict)
    found = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(top)"
        found.append(f"{path}: {error.message}")
    return found


def problems(obj: dict[str, Any], schemas: dict[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    """`crd_errors` of `obj` against its CRD among `schemas` (from `load_crds`), each as
    `Kind name: path: message`; a kind without a CRD is one problem."""
    group, version = group_version(obj)
    kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
    schema = schemas.get((group, version, str(kind)))
    if schema is None:
        return [f"{kind} {name}: no CRD for {obj.get('apiVersion')} {kind}"]
    return [f"{kind} {name}: {found}" for found in crd_errors(obj, schema)]


def builtin_errors(obj: dict[str, Any]) -> list[str]:
    """Every way a built-in object breaks Kubernetes' own schema (strict) at K8S_VERSION."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top)"
        return [f"{path}: {exc.message}"]
    return []


def group_version(obj: dict[str, Any]) -> tuple[str, str]:
    group, _, version = obj["apiVersion"].rpartition("/")
    return group, version


def ray_cluster_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The RayCluster specs inside a RayService, RayJob or RayCronJob."""
    spec = obj.get("spec", {})
    if obj["kind"] == "RayService":
        return [spec["rayClusterConfig"]]
    if obj["kind"] == "RayJob":
        return [spec["rayClusterSpec"]]
    if obj["kind"] == "RayCronJob":
        return [spec["jobTemplate"]["rayClusterSpec"]]
    return []


def ray_job_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] == "RayJob":
        return [obj["spec"]]
    if obj["kind"] == "RayCronJob":
        return [obj["spec"]["jobTemplate"]]
    return []


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(role, pod template) of every pod an object makes: ray-head, ray-worker, submitter, pod."""
    found: list[tuple[str, dict[str, Any]]] = []
    for cluster in ray_cluster_specs(obj):
        found.append(("ray-head", cluster["headGroupSpec"]["template"]))
        found += [("ray-worker", g["template"]) for g in cluster.get("workerGroupSpecs", [])]
    for job in ray_job_specs(obj):
        if "submitterPodTemplate" in job:
            found.append(("submitter", job["submitterPodTemplate"]))
    if obj["kind"] in ("StatefulSet", "Deployment", "Job"):
        found.append(("pod", obj["spec"]["template"]))
    return found
