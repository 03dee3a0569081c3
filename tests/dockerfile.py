"""Read the repository's Dockerfile, and run its non-root steps on this machine without Docker.

No container daemon runs here, so tests/test_dockerfile.py replays the Dockerfile: its COPY
instructions copy the same files (honouring .dockerignore's `**/` patterns) into a folder that
stands for the image's root, and its RUN instructions run with `python` meaning a fresh virtual
environment's interpreter. RUN instructions under `USER root` change the operating system (they
are listed, not run). Absolute paths under /home and /tmp in the instructions are moved under that
root, so `/home/ray/wheels` is `<root>/home/ray/wheels`.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d)(?P<minor>\d+)-cpu$")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    line: int
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """The Dockerfile's stages, continuation lines joined, comments dropped."""
    stages: list[Stage] = []
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append((start, pending + line))
        pending = ""
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name, number))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"Dockerfile:{number}: {keyword} before the first FROM")
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip(), number))
    return stages


def ignore_patterns() -> list[str]:
    """The `**/` patterns of .dockerignore (the others name top-level paths the COPYs skip)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [p.removeprefix("**/") for p in (x.strip() for x in lines) if p.startswith("**/")]


@dataclass
class Replay:
    """Replays the Dockerfile's stages into `root`, running RUN steps with `env`."""

    root: Path
    env: dict[str, str]
    ran: list[str] = field(default_factory=list)
    skipped_as_root: list[str] = field(default_factory=list)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    def rewrite(self, command: str) -> str:
        return re.sub(r"(?<![\w/:.])/(home|tmp)/", lambda m: f"{self.root}/{m.group(1)}/", command)

    def copy(self, args: str, cwd: Path) -> None:
        words = [w for w in shlex.split(args) if not w.startswith("--chown")]
        from_stage = any(w.startswith("--from=") for w in words)
        *sources, dest = [w for w in words if not w.startswith("--from=")]
        target = self.path(dest) if dest.startswith("/") else cwd / dest
        ignore = shutil.ignore_patterns(*ignore_patterns())
        for source in sources:
            origin = self.path(source) if from_stage else ROOT / source
            if not origin.exists():
                raise FileNotFoundError(f"COPY {source}: {origin} does not exist")
            if origin.is_dir():  # Docker copies a directory's contents into the destination
                shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
            else:
                into = target if dest.endswith("/") or len(sources) > 1 else target.parent
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into / origin.name if into == target else target)

    def run_stage(self, stage: Stage) -> None:
        cwd, as_root = self.root, False
        for step in stage.instructions:
            if step.keyword == "WORKDIR":
                cwd = self.path(step.args) if step.args.startswith("/") else cwd / step.args
                cwd.mkdir(parents=True, exist_ok=True)
            elif step.keyword == "USER":
                as_root = step.args.split(":")[0] in {"root", "0"}
            elif step.keyword == "COPY":
                self.copy(step.args, cwd)
            elif step.keyword == "RUN" and as_root:
                self.skipped_as_root.append(step.args)
            elif step.keyword == "RUN":
                command = self.rewrite(step.args)
                out = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", command],
                    cwd=cwd,
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert out.returncode == 0, (
                    f"Dockerfile:{step.line}: RUN failed ({out.returncode}): {command}\n"
                    f"{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
                )
                self.ran.append(step.args)


def base_versions(stages: list[Stage]) -> list[tuple[int, str, str]]:
    """(line, Ray version, Python version) of every FROM; ValueError naming the line for an
    image that is not an official rayproject/ray CPU tag."""
    found = []
    for stage in stages:
        match = BASE_IMAGE.match(stage.image)
        if match is None:
            raise ValueError(
                f"Dockerfile:{stage.line}: FROM {stage.image} is not rayproject/ray:X.Y.Z-pyXY-cpu"
            )
        found.append((stage.line, match["ray"], f"{match['py']}.{match['minor']}"))
    return found


def pinned_torch(stages: list[Stage]) -> list[str]:
    """Every torch==X the Dockerfile installs."""
    return [
        m.group(1)
        for stage in stages
        for step in stage.instructions
        if step.keyword == "RUN"
        for m in re.finditer(r"\btorch==([\w.+]+)", step.args)
    ]
