"""docs/deploy.md: every command it shows is one the manifests back. The shell blocks are parsed and
each kubectl, helm, docker, n1v1 and ray command is checked against what kustomize builds, the
contract's secret names and keys, and the `n1v1` command line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from kube import KUBERAY, ROOT, build
from test_kube_manifests import IMAGES, SECRETS, VERSION

DOC = ROOT / "docs" / "deploy.md"


def commands() -> list[list[str]]:
    """Every command line of the doc's ```sh blocks, continuation lines joined, comments and
    shell plumbing (`&`, `>`, `<`, `|` and what follows) dropped."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            cut = [i for i, w in enumerate(words) if w in {"&", ">", "<", "|", "&&"}]
            words = words[: cut[0]] if cut else words
            if words:
                found.append(words)
    return found


def option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        if word in names:
            return words[i + 1]
        for name in names:
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
    return None


def kustomization(words: list[str]) -> str | None:
    path = option(words, "-k")
    return None if path is None else str(Path(path).relative_to("kuberay"))


def all_objects() -> list[dict]:
    return [
        o for name in ("overlays/dev", "overlays/prod", "overlays/prod/jobs") for o in build(name)
    ]


def test_the_doc_has_commands() -> None:
    assert len(commands()) > 30


def test_kustomize_paths_and_selectors_exist() -> None:
    seen = 0
    for words in commands():
        path = kustomization(words) if words[0] == "kubectl" else None
        if path is None:
            continue
        assert (KUBERAY / path / "kustomization.yaml").is_file(), words
        built = build(path)
        selector = option(words, "-l")
        if selector:
            key, value = selector.split("=")
            matched = [o for o in built if o["metadata"]["labels"].get(key) == value]
            assert len(matched) == 1, (words, [o["metadata"]["name"] for o in matched])
        seen += 1
    assert seen >= 5


def test_secrets_are_created_with_the_contract_names_and_keys() -> None:
    created: dict[str, set[str]] = {}
    for words in commands():
        if words[:4] == ["kubectl", "create", "secret", "generic"]:
            keys = {w.split("=")[1] for w in words if w.startswith("--from-")}
            created.setdefault(words[4], set()).update(keys)
        if words[:3] == ["kubectl", "get", "secret"]:
            key = re.fullmatch(r"\{\.data\.(\w+)\}", option(words, "-o").split("=", 1)[1])
            assert key and key.group(1) in SECRETS[words[3]], words
    assert created == SECRETS


def test_names_ports_and_commands_match_the_manifests() -> None:
    from n1v1.cli import build_parser

    objects = all_objects()
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    (svc,) = {o["metadata"]["name"] for o in objects if o["kind"] == "RayService"}
    services = {f"{svc}-head-svc": {"8265", "10001"}, f"{svc}-serve-svc": {"8000"}}
    groups = {
        g["groupName"]
        for o in objects
        if o["kind"] == "RayService"
        for g in o["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    }
    checked = set()
    for words in commands():
        tool = words[0]
        if tool == "n1v1":
            build_parser().parse_args(words[1:])
            checked.add("n1v1")
        elif tool == "helm" and words[1] == "install" and "kuberay-operator" in words:
            assert option(words, "--version") == "1.7.0"
            assert (ROOT / option(words, "-f")).is_file()
            checked.add("helm")
        elif tool == "docker" and words[1] in ("build", "tag"):
            tags = {w for w in words if ":" in w}
            assert tags <= set(IMAGES.values()), words
            checked.add("docker")
        elif tool == "ray" and words[1:3] == ["job", "submit"]:
            entry = words[words.index("--") + 1 :]
            assert entry[:2] == ["python", "/home/ray/jobs/sweep.py"]
            build_parser().parse_args(["sweep", *entry[2:]])
            checked.add("ray")
        elif tool == "kubectl":
            for word in words:
                if word.startswith("svc/"):
                    name = word.removeprefix("svc/")
                    assert name in services, words
                    ports = {p.split(":")[0] for p in words if re.fullmatch(r"\d+:\d+", p)}
                    assert ports <= services[name], words
            kind = {"rayservice": "RayService", "rayjob": "RayJob", "raycronjob": "RayCronJob"}
            if len(words) > 3 and words[2] in kind and not words[3].startswith("-"):
                assert (kind[words[2]], words[3]) in names, words
            selector = option(words, "-l") or ""
            if selector.startswith("job-name="):
                assert ("RayJob", selector.split("=")[1]) in names
            if selector.startswith("ray.io/group="):
                assert selector.split("=")[1] in groups
            if "n1v1-postgres-0" in words:
                assert ("StatefulSet", "n1v1-postgres") in names
            checked.add("kubectl")
    assert checked == {"n1v1", "helm", "docker", "ray", "kubectl"}
    assert f"n1v1:{VERSION}" in IMAGES.values()


@pytest.mark.parametrize(
    "section", ["Monitoring", "Troubleshooting", "Upgrade", "Back up and restore", "Scale"]
)
def test_the_doc_has_its_sections(section: str) -> None:
    assert re.search(rf"^#+ .*{section}", DOC.read_text(), flags=re.M | re.I), section
