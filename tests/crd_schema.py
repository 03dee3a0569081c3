"""Validate custom resources offline against CRD schemas, strictly.

A real API server prunes fields its CRD does not declare, silently; here an undeclared field is an
error, so a typo (`relabeling:` for `relabelings:`) fails a test instead of vanishing in a cluster.
The CRDs' `openAPIV3Schema` is turned into JSON Schema: `additionalProperties: false` wherever an
object declares `properties` and neither allows extra keys nor says
`x-kubernetes-preserve-unknown-fields`; `x-kubernetes-int-or-string` becomes integer-or-string and
`nullable` adds null. `metadata` is checked for a name and string labels (the CRD schema leaves it
to the API server).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

# Names a directory of CRDs to use instead of ../shared/crds (e.g. `kubectl get crd NAME -o yaml`
# of a real cluster's CRDs, one per file). Not N1V1_*: that prefix is the settings namespace.
CRD_DIR_ENV = "CRD_DIR"


def strict(schema: Any) -> Any:
    """A copy of an OpenAPI v3 (Kubernetes structural) schema as strict JSON Schema."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def load_crds(directories: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): strict schema} of every served version of every CRD in the YAML files
    under `directories`."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for directory in directories:
        for path in sorted(Path(directory).rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", True):
                        continue
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                    schemas[key] = strict(schema)
    return schemas


def problems(
    obj: Mapping[str, Any], schemas: Mapping[tuple[str, str], dict[str, Any]]
) -> list[str]:
    """Every schema violation of `obj`, each as `Kind name: path: message`; [] when valid."""
    kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
    where = f"{kind} {name}"
    schema = schemas.get((str(obj.get("apiVersion")), str(kind)))
    if schema is None:
        return [f"{where}: no CRD for {obj.get('apiVersion')} {kind}"]
    out = []
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        out.append(f"{where}: metadata.name: required")
    else:
        for field in ("labels", "annotations"):
            values = metadata.get(field) or {}
            for key, value in values.items():
                if not isinstance(value, str):
                    out.append(f"{where}: metadata.{field}.{key}: {value!r} is not a string")
    for error in sorted(Draft202012Validator(schema).iter_errors(obj), key=str):
        path = ".".join(str(p) for p in error.absolute_path) or "(root)"
        out.append(f"{where}: {path}: {error.message}")
    return out
