"""kuberay/: every overlay builds with kustomize, every object passes its schema in strict mode, and
the objects agree with each other, with the image and with the Serve config.

Custom resources are checked against the CRDs in ../shared/crds (KubeRay v1.7.0, prometheus-
operator v0.93.0), or in the directory CRD_DIR names (e.g. CRDs exported from your cluster with
`kubectl get crd NAME -o yaml`); built-in kinds against Kubernetes 1.32's schemas
(kubernetes-validate). Without kubectl or ../shared these tests skip with the reason, except in
CI (CI_REQUIRE_SHARED=1), where they fail.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube import (
    BUILDS,
    CRD_DIR_ENV,
    KUBERAY,
    ROOT,
    build,
    builtin_errors,
    crd_errors,
    group_version,
    load_crds,
    pod_templates,
    ray_cluster_specs,
    ray_job_specs,
)
from project import VERSION, pin

RAY = pin("ray")
IMAGES = {"dev": f"n1v1:{VERSION}", "prod": f"registry.example.com/n1v1:{VERSION}"}
# The named Ray ports of the shared contract (docs/deploy.md); every Ray pod exports metrics
# on 8080.
HEAD_PORTS = {
    "gcs-server": 6379,
    "dashboard": 8265,
    "client": 10001,
    "serve": 8000,
    "metrics": 8080,
    "as-metrics": 44217,
    "dash-metrics": 44227,
}
WORKER_PORTS = {"metrics": 8080}
LABELS = {
    "app.kubernetes.io/name": "n1v1",
    "app.kubernetes.io/part-of": "n1v1",
    "app.kubernetes.io/version": VERSION,
    "app.kubernetes.io/managed-by": "kustomize",
}
# Secret name -> the keys the manifests may read (names and keys, never values, are in git).
SECRETS = {
    "n1v1-api-token": {"token"},
    "n1v1-database": {"url"},
    "n1v1-redis": {"password"},
    "n1v1-exchange": {"api-key", "api-secret"},
    "n1v1-ray-auth": {"auth_token"},  # KubeRay reads this key (authOptions.secretName)
    "n1v1-postgres": {"password"},  # dev's in-cluster PostgreSQL
}


@pytest.fixture(scope="session")
def crds(request: pytest.FixtureRequest) -> dict[tuple[str, str, str], dict[str, Any]]:
    named = os.environ.get(CRD_DIR_ENV)
    directory = Path(named) if named else request.getfixturevalue("shared_dir") / "crds"
    schemas = load_crds(directory)
    assert ("ray.io", "v1", "RayService") in schemas, f"no KubeRay CRDs under {directory}"
    return schemas


def objects(name: str) -> tuple[dict[str, Any], ...]:
    return build(name)


def everything() -> list[tuple[str, dict[str, Any]]]:
    return [(name, obj) for name in BUILDS for obj in objects(name)]


def rayservice(overlay: str) -> dict[str, Any]:
    (svc,) = [o for o in objects(f"overlays/{overlay}") if o["kind"] == "RayService"]
    return svc


def ray_containers(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (role, c)
        for role, template in pod_templates(obj)
        if role.startswith("ray-")
        for c in template["spec"]["containers"]
    ]


# -- build and schemas ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(BUILDS))
def test_each_kustomization_builds_into_its_namespace(name: str) -> None:
    built = objects(name)
    assert built
    assert {o["metadata"].get("namespace") for o in built} == {BUILDS[name]}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_custom_resources_pass_their_crds_strictly(
    name: str, crds: dict[tuple[str, str, str], dict[str, Any]]
) -> None:
    checked = 0
    for obj in objects(name):
        group, version = group_version(obj)
        if not group or group.endswith(".k8s.io") or group in ("apps", "batch", "policy"):
            continue  # a built-in kind
        key = (group, version, obj["kind"])
        assert key in crds, f"{obj['kind']} {obj['apiVersion']}: no CRD for it"
        assert crd_errors(obj, crds[key]) == [], f"{obj['kind']}/{obj['metadata']['name']}"
        checked += 1
    assert checked >= (3 if name.endswith("jobs") else 2)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_builtin_kinds_pass_the_kubernetes_schemas_strictly(name: str) -> None:
    for obj in objects(name):
        group, _ = group_version(obj)
        if group and not group.endswith(".k8s.io") and group not in ("apps", "batch", "policy"):
            continue
        assert builtin_errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_strict_crd_check_catches_what_an_api_server_would_prune(
    crds: dict[tuple[str, str, str], dict[str, Any]],
) -> None:
    schema = crds[("ray.io", "v1", "RayService")]
    svc = yaml.safe_load(yaml.safe_dump(rayservice("prod")))
    cluster = svc["spec"]["rayClusterConfig"]
    cluster["headGroupSpec"]["rayStartParam"] = {"num-cpus": "0"}  # a typo: pruned in a cluster
    cluster["workerGroupSpecs"][0]["replicas"] = "1"  # a string where an integer belongs
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["resources"]["limits"]["cpu"] = 2  # int-or-string: an integer is fine
    head["ports"][0]["containerPort"] = None  # not nullable
    assert crd_errors(svc, schema) == [
        "spec.rayClusterConfig.headGroupSpec: Additional properties are not allowed "
        "('rayStartParam' was unexpected)",
        "spec.rayClusterConfig.headGroupSpec.template.spec.containers.0.ports.0.containerPort: "
        "None is not of type 'integer'",
        "spec.rayClusterConfig.workerGroupSpecs.0.replicas: '1' is not of type 'integer'",
    ]


def test_strict_builtin_check_catches_a_typo() -> None:
    (pvc,) = [o for o in objects("overlays/prod") if o["kind"] == "PersistentVolumeClaim"]
    typo = yaml.safe_load(yaml.safe_dump(pvc))
    typo["spec"]["accesModes"] = typo["spec"].pop("accessModes")
    (error,) = builtin_errors(typo)
    assert "accesModes" in error


# -- agreement ------------------------------------------------------------------------------------
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_one_image_and_one_ray_version_everywhere(overlay: str) -> None:
    images, versions = set(), set()
    for name in (f"overlays/{overlay}", f"overlays/{overlay}/jobs"):
        for obj in objects(name):
            versions |= {c["rayVersion"] for c in ray_cluster_specs(obj)}
            for role, template in pod_templates(obj):
                if role != "pod":
                    images |= {c["image"] for c in template["spec"]["containers"]}
    assert images == {IMAGES[overlay]}
    assert versions == {RAY}


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_ray_ports_follow_the_contract(name: str) -> None:
    for obj in objects(name):
        for cluster in ray_cluster_specs(obj):
            for group in [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]:
                assert group["rayStartParams"].get("metrics-export-port") == "8080"
        for role, container in ray_containers(obj):
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if role == "ray-worker":
                assert ports == WORKER_PORTS
            elif obj["kind"] == "RayService":
                assert ports == HEAD_PORTS
            else:  # a job's head serves no HTTP traffic
                assert ports == {k: v for k, v in HEAD_PORTS.items() if k != "serve"}


def test_serve_port_agrees_with_the_serve_config_and_the_ingress() -> None:
    svc = rayservice("prod")
    config = yaml.safe_load(svc["spec"]["serveConfigV2"])
    assert config["http_options"]["port"] == HEAD_PORTS["serve"]
    (ingress,) = [o for o in objects("overlays/prod") if o["kind"] == "Ingress"]
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    # KubeRay names the Service in front of a RayService's Serve proxies <name>-serve-svc
    assert path["backend"]["service"] == {
        "name": f"{svc['metadata']['name']}-serve-svc",
        "port": {"number": HEAD_PORTS["serve"]},
    }
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_labels_follow_the_contract(name: str) -> None:
    for obj in objects(name):
        labels = obj["metadata"].get("labels", {})
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert {k: labels.get(k) for k in LABELS} == LABELS, where
        assert labels.get("app.kubernetes.io/component"), where
        for role, template in pod_templates(obj):
            pod_labels = template["metadata"]["labels"]
            assert pod_labels["app.kubernetes.io/name"] == "n1v1", where
            expected = {
                "submitter": "ray-job-submitter",
                "pod": labels["app.kubernetes.io/component"],
            }
            assert pod_labels["app.kubernetes.io/component"] == expected.get(role, role), where


# -- secrets --------------------------------------------------------------------------------------
def secret_references(value: Any) -> list[tuple[str, str | None]]:
    """(secret name, key or None for the whole Secret) wherever a manifest names a Secret."""
    found: list[tuple[str, str | None]] = []
    if isinstance(value, dict):
        if "secretKeyRef" in value:
            found.append((value["secretKeyRef"]["name"], value["secretKeyRef"]["key"]))
        if "secret" in value and isinstance(value["secret"], dict):
            items = value["secret"].get("items")
            name = value["secret"]["secretName"]
            found += [(name, i["key"]) for i in items] if items else [(name, None)]
        if isinstance(value.get("authOptions"), dict) and value["authOptions"].get("secretName"):
            found.append((value["authOptions"]["secretName"], "auth_token"))
        for v in value.values():
            found += secret_references(v)
    elif isinstance(value, list):
        for v in value:
            found += secret_references(v)
    return found


def test_no_secret_with_data_is_committed() -> None:
    for path in sorted(KUBERAY.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", path
    for name, obj in everything():
        assert obj["kind"] != "Secret", name


def test_secrets_are_referenced_by_their_contract_names_and_keys() -> None:
    seen: dict[str, set[str | None]] = {}
    for _, obj in everything():
        for secret, key in secret_references(obj):
            seen.setdefault(secret, set()).add(key)
    assert set(seen) <= set(SECRETS) | {"n1v1-tls"}, set(seen) - set(SECRETS)
    for secret, keys in seen.items():
        if secret != "n1v1-tls":  # written by cert-manager, read by the ingress controller
            assert keys - {None} <= SECRETS[secret], secret
    assert seen["n1v1-exchange"] == {None}  # mounted whole, optional: for live trading later
    assert {"n1v1-api-token", "n1v1-database", "n1v1-redis", "n1v1-ray-auth"} <= set(seen)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_serve_app_reads_its_secrets_from_mounted_files(overlay: str) -> None:
    svc = rayservice(overlay)
    files = {
        "N1V1_STORE_URL_FILE": ("n1v1-database", "url"),
        "N1V1_API_TOKEN_FILE": (
            "n1v1-api-token",
            "token",
        ),
    }
    for role, template in pod_templates(svc):
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for variable, (secret, key) in files.items():
            folder, _, file = env[variable].rpartition("/")
            volume = volumes[mounts[folder]["name"]]
            assert mounts[folder].get("readOnly") is True, (role, variable)
            assert volume["secret"]["secretName"] == secret, (role, variable)
            assert {"key": key, "path": file} in volume["secret"]["items"], (role, variable)
        assert mounts["/mnt/n1v1"]["name"] == "shared"
        assert volumes["shared"]["persistentVolumeClaim"]["claimName"] == "n1v1-shared"


# -- resources, placement, scaling ----------------------------------------------------------------
def cpu(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_every_container_has_requests_and_limits(name: str) -> None:
    for obj in objects(name):
        containers = [c for _, t in pod_templates(obj) for c in t["spec"]["containers"]]
        containers += [c.get("autoscalerOptions", {}) for c in ray_cluster_specs(obj)]
        for container in containers:
            if not container:
                continue  # no autoscaler in this cluster
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), (obj["kind"], container)
            assert cpu(resources["requests"]["cpu"]) <= cpu(resources["limits"]["cpu"])


def serve_needs(svc: dict[str, Any]) -> dict[str, float]:
    """CPUs each deployment asks for at its most replicas, from serveConfigV2 (Engine: one)."""
    (app,) = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]
    per = {d["name"]: d["ray_actor_options"]["num_cpus"] for d in app["deployments"]}
    return {
        "Engine": per["Engine"],
        "Gateway": per["Gateway"] * app["args"]["api"]["max_replicas"],
        "Model": per["Model"] * app["args"]["model"]["max_replicas"],
    }


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_engine_has_one_node_of_its_own_and_nothing_lands_on_the_head(overlay: str) -> None:
    svc = rayservice(overlay)
    cluster = svc["spec"]["rayClusterConfig"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert "resources" not in cluster["headGroupSpec"]
    groups = cluster["workerGroupSpecs"]
    for group in groups:  # KubeRay refuses a group that sets both (validateRayGroupResources)
        params = group["rayStartParams"]
        assert not (group.get("resources") and {"num-cpus", "resources"} & set(params))
    engine_groups = [g for g in groups if "n1v1_engine" in g.get("resources", {})]
    assert [g["groupName"] for g in engine_groups] == ["engine"]
    (engine,) = engine_groups
    assert engine["resources"]["n1v1_engine"] == "1"
    assert engine["replicas"] == engine["minReplicas"] == engine["maxReplicas"] == 1
    (app,) = yaml.safe_load(svc["spec"]["serveConfigV2"])["applications"]
    deployments = {d["name"]: d for d in app["deployments"]}
    assert deployments["Engine"]["num_replicas"] == 1
    assert "autoscaling_config" not in deployments["Engine"]
    assert deployments["Engine"]["ray_actor_options"]["resources"] == {"n1v1_engine": 1}
    # every replica needs a CPU, and the head offers none
    assert all(d["ray_actor_options"]["num_cpus"] > 0 for d in deployments.values())
    needs = serve_needs(svc)
    if overlay == "dev":  # one group: 1 + 2 x 0.25 + 2 x 0.5 = 2.5 CPUs <= 3
        assert len(groups) == 1
        assert sum(needs.values()) <= cpu(engine["resources"]["CPU"])
    else:  # the Engine fills its node (1 CPU): nothing else fits there
        assert needs["Engine"] == cpu(engine["resources"]["CPU"])
        (serve,) = [g for g in groups if g["groupName"] == "serve"]
        serve_cpus = cpu(serve["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
        assert needs["Gateway"] + needs["Model"] <= serve_cpus * serve["maxReplicas"]
        assert serve["minReplicas"] < serve["maxReplicas"]


def test_dev_is_small_and_prod_is_fault_tolerant_and_autoscaled() -> None:
    dev = rayservice("dev")["spec"]["rayClusterConfig"]
    prod = rayservice("prod")["spec"]["rayClusterConfig"]
    for overlay in ("dev", "prod"):  # docs/deploy.md, "Upgrade", describes exactly this
        spec = rayservice(overlay)["spec"]
        assert spec["upgradeStrategy"] == {"type": "NewCluster"}
        assert spec["rayClusterDeletionDelaySeconds"] == 15
    assert "gcsFaultToleranceOptions" not in dev and not dev.get("enableInTreeAutoscaling")
    assert prod["enableInTreeAutoscaling"] is True
    ft = prod["gcsFaultToleranceOptions"]
    assert ft["redisPassword"] == {
        "valueFrom": {"secretKeyRef": {"name": "n1v1-redis", "key": "password"}}
    }
    host, _, port = ft["redisAddress"].rpartition(":")
    (redis,) = [o for o in objects("overlays/prod") if o["metadata"]["name"] == host]
    assert redis["kind"] == "Service" and redis["spec"]["type"] == "ExternalName"
    assert redis["spec"]["ports"][0]["port"] == int(port)
    # the autoscaler needs the API token: the head mounts it, no worker does
    assert prod["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is True
    for cluster in (dev, prod):
        assert cluster["authOptions"] == {"mode": "token", "secretName": "n1v1-ray-auth"}
        for group in cluster["workerGroupSpecs"]:
            assert group["template"]["spec"]["automountServiceAccountToken"] is False
    assert dev["headGroupSpec"]["template"]["spec"]["automountServiceAccountToken"] is False
    kinds = {o["kind"] for o in objects("overlays/dev")}
    assert {"StatefulSet", "Service"} <= kinds and "Ingress" not in kinds
    assert "StatefulSet" not in {o["kind"] for o in objects("overlays/prod")}


def test_every_pod_runs_unprivileged() -> None:
    for _, obj in everything():
        for _, template in pod_templates(obj):
            spec = template["spec"]
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


# -- jobs -----------------------------------------------------------------------------------------
def entrypoints() -> list[tuple[str, dict[str, Any], list[str]]]:
    found = []
    for name in ("overlays/prod", "overlays/prod/jobs"):
        for obj in objects(name):
            for job in ray_job_specs(obj):
                found.append((obj["metadata"]["name"], obj, shlex.split(job["entrypoint"])))
    return found


def test_jobs_clean_up_retry_and_stop() -> None:
    names = set()
    for name, obj, _ in entrypoints():
        (job,) = ray_job_specs(obj)
        assert job["shutdownAfterJobFinishes"] is True, name
        assert job["ttlSecondsAfterFinished"] > 0, name
        assert job["backoffLimit"] >= 1, name
        assert job["activeDeadlineSeconds"] > 0, name
        names.add(name)
    assert names == {"n1v1-train", "n1v1-sweep", "n1v1-walkforward", "n1v1-retrain"}


def test_job_entry_points_are_the_images_and_their_flags_parse() -> None:
    from n1v1.cli import build_parser

    for name, _, argv in entrypoints():
        assert argv[0] == "python" and argv[1].startswith("/home/ray/jobs/"), name
        script = ROOT / "jobs" / Path(argv[1]).name
        paths = [a for a in argv[2:] if a.startswith("/")]
        assert all(p.startswith("/mnt/n1v1/") for p in paths), (name, paths)
        if not script.exists():
            assert script.name == "retrain.py", name
            continue  # jobs/retrain.py comes with the retraining branch; checked once merged
        command = re.search(r'main\(\["(\w+)", \*sys\.argv\[1:\]\]\)', script.read_text())
        if command:  # a job that is an `n1v1` command under another name: parse its flags
            build_parser().parse_args([command.group(1), *argv[2:]])
        else:  # its own parser: every flag the entry point uses is in its --help
            import subprocess
            import sys

            out = subprocess.run(
                [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300
            )
            assert out.returncode == 0, out.stderr[-2000:]
            for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
                assert flag in out.stdout, (name, flag)


def test_a_retried_training_job_resumes_under_its_run_name() -> None:
    (train,) = [argv for name, _, argv in entrypoints() if name == "n1v1-train"]
    run_name = train[train.index("--run-name") + 1]
    assert run_name and train[train.index("--storage-path") + 1] == "/mnt/n1v1/ray_results"
    (sweep,) = [argv for name, _, argv in entrypoints() if name == "n1v1-sweep"]
    assert sweep[sweep.index("--out") + 1].startswith("/mnt/n1v1/research/")


def test_every_job_writes_only_to_the_shared_volume_by_the_jobs_own_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What each entry point writes, parsed as it parses it and checked as a job checks it
    (n1v1/locations.py, with Ray's job marker set): absolute, on the shared volume. A template
    that left out --model-root, --storage-path or --out would fall back to a relative default,
    which the job refuses."""
    from n1v1.cli import build_parser
    from n1v1.cli.ml import train_settings
    from n1v1.locations import RAY_JOB_ENV, persistent_locations

    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    for name, _, argv in entrypoints():
        command = argv[1].rsplit("/", 1)[1].removesuffix(".py")
        args = build_parser().parse_args([command, *argv[2:]])
        written = {
            f"--{flag.replace('_', '-')}": getattr(args, flag)
            for flag in ("out", "report", "json", "model_root", "storage_path")
            if getattr(args, flag, None) is not None
        }
        assert written, name
        where = persistent_locations(written)
        assert all(path.startswith("/mnt/n1v1/") for path in where.values()), (name, where)
        if command in ("train", "retrain"):
            ml = train_settings(args).ml
            assert (ml.model_root, ml.storage_path) == ("/mnt/n1v1/models", "/mnt/n1v1/ray_results")


def test_the_retraining_schedule_is_the_one_its_entry_point_is_told() -> None:
    (cron,) = [o for o in objects("overlays/prod") if o["kind"] == "RayCronJob"]
    argv = shlex.split(cron["spec"]["jobTemplate"]["entrypoint"])
    assert argv[argv.index("--schedule") + 1] == cron["spec"]["schedule"]
    assert {"--name", "--data", "--model-root", "--storage-path"} <= set(argv)
    head = cron["spec"]["jobTemplate"]["rayClusterSpec"]["headGroupSpec"]["template"]
    env = {e["name"]: e["value"] for e in head["spec"]["containers"][0]["env"]}
    assert env["N1V1_STORE_URL_FILE"] == "/var/run/secrets/n1v1/database/url"  # for its lock


# -- network --------------------------------------------------------------------------------------
RAY_PODS = {
    "matchLabels": {"app.kubernetes.io/name": "n1v1"},
    "matchExpressions": [
        {
            "key": "app.kubernetes.io/component",
            "operator": "In",
            "values": ["ray-head", "ray-worker"],
        }
    ],
}


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_only_named_peers_reach_named_ports(overlay: str) -> None:
    """Default deny; Ray pods talk freely among themselves; from anywhere else only these ports."""
    policies = [o for o in objects(f"overlays/{overlay}") if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"]
    allowed = {  # peer (namespace, pod name label) -> ports
        ("ingress-nginx", "ingress-nginx"): {8000},
        ("kuberay-system", "kuberay-operator"): {8265},
        ("monitoring", "prometheus"): {8080, 44217, 44227},
    }
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            for peer in rule["from"]:
                if peer == {"podSelector": RAY_PODS}:
                    continue  # Ray to Ray (and to dev's PostgreSQL, on 5432)
                if "namespaceSelector" not in peer:  # a RayJob's submitter pod
                    assert peer["podSelector"]["matchLabels"] == {
                        "ray.io/originated-from-crd": "RayJob"
                    }
                    assert ports == {8265}
                    continue
                key = (
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                    peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
                )
                assert ports and ports == allowed[key], (policy["metadata"]["name"], key)
    for obj in objects(f"overlays/{overlay}"):
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") in ("ClusterIP", "ExternalName")


def test_operator_values_enable_the_raycronjob_gate_and_keep_the_charts_defaults() -> None:
    values = yaml.safe_load((KUBERAY / "operator" / "values.yaml").read_text())
    gates = {g["name"]: g["enabled"] for g in values["featureGates"]}
    # the kuberay-operator chart v1.7.0's own featureGates, with RayCronJob switched on
    assert gates == {
        "RayClusterStatusConditions": True,
        "RayJobDeletionPolicy": True,
        "RayMultiHostIndexing": True,
        "RayServiceIncrementalUpgrade": True,
        "RayCronJob": True,
        "RayClusterMTLS": False,
        "RayClusterNetworkPolicy": False,
        "RayClusterHistoryServer": False,
    }
