"""Where a command may write: a persistent location, never Ray's temporary copy of a job's files.

`ray job submit --working-dir .` uploads the checkout and runs the entry point *inside a copy* of
it, under the Ray session's temp dir (`<temp>/session_*/runtime_resources/working_dir_files/
_ray_pkg_<hash>/`). A relative location (the defaults `models`, `ray_results`, `out/sweep`)
resolves inside that copy: the job succeeds, and its model, checkpoints or results are deleted
with the Ray session, on the one node that had them, unseen by `n1v1 models list` in the checkout
and by the Serve app. A job submitted without a working dir fares no better: its working directory
is whatever the job server's is (in a RayJob, the head pod's own filesystem, gone with the pod).

So every location a job writes passes `persistent_locations`, the one home of the rule:

1. a URI (`s3://...`), where the setting accepts one (Ray Train's storage), is used as given;
2. under a Ray job (its entry point runs with Ray's job config in the environment) a relative
   path is refused: the job cannot know which directory the submitter meant, so the submitter
   says it, as an absolute path (`--model-root "$PWD/models"`), resolved by the shell that runs
   `ray job submit`;
3. a path that resolves inside a Ray session's `runtime_resources` (the working-dir copies, and
   every other per-session runtime environment) is refused, job or not;
4. otherwise the path, made absolute (Ray Train requires absolute local paths).

A refusal is a ConfigError naming each offending location, its flag and its N1V1_* variable, and
what to pass instead, raised before anything is read, trained or written. Outside a Ray job a
relative path keeps meaning "relative to where you run the command" (`n1v1 train` in the checkout
writes `models/` there, where `n1v1 models list` reads it).

Nothing here imports Ray (the name of Ray's job-config variable is spelled out, and a test checks
it against Ray's own constant).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path

from n1v1.config import ConfigError

# Set by Ray's job supervisor in the environment of a job's entry point, and only there
# (ray._private.runtime_env.constants.RAY_JOB_CONFIG_JSON_ENV_VAR).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
RUNTIME_RESOURCES = "runtime_resources"  # <temp>/session_*/runtime_resources/: Ray's, per session
GUIDE = 'docs/ml/training.md, "Where a job writes"'


def in_ray_job(env: Mapping[str, str] | None = None) -> bool:
    """True in the entry point of a `ray job submit` (or RayJob) job."""
    return RAY_JOB_ENV in (os.environ if env is None else env)


def persistent_locations(
    locations: Mapping[str, str | Path | None],
    *,
    uris: Collection[str] = (),
    spelled: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Each location as an absolute path (or a URI), by the rules of the module docstring; None
    stays None (not asked for). A key names where the value came from: a setting
    (`ml.model_root`), a flag (`--out`) or an environment variable (`N1V1_STORE_URL`). `uris`:
    the keys that accept a URI; `spelled`: how a key's value wraps the path, as a format string
    (`sqlite:///{}`), for the example in the message. Raises one ConfigError listing every
    refused location."""
    job = in_ray_job(env)
    resolved: dict[str, str | None] = {}
    problems: list[str] = []
    for key, value in locations.items():
        if value is None or (key in uris and "://" in str(value)):
            resolved[key] = None if value is None else str(value)
            continue
        path = Path(value).expanduser()
        absolute = path.resolve()
        copy = _copy_root(absolute)
        if job and not path.is_absolute():
            where = (
                "Ray's temporary copy of the submitted working dir, deleted with the Ray session"
                if copy
                else "the job server's directory, not the one you submitted from"
            )
            problems.append(
                f"{key} is {str(value)!r}, a relative path, and this is a Ray job: it would "
                f"resolve to {absolute}, in {where}"
            )
        elif copy:
            problems.append(
                f"{key} resolves to {absolute}, inside Ray's temporary copy of a working dir, "
                "deleted with the Ray session"
            )
        else:
            resolved[key] = str(absolute)
            continue
        tail = str(path) if not path.is_absolute() else str(absolute.relative_to(copy or "/"))
        example = (spelled or {}).get(key, "{}").format(f"$PWD/{tail}")
        problems.extend(_how(key, example))
    if problems:
        problems.append(f"nothing was written; see {GUIDE}")
        raise ConfigError("\n".join(problems))
    return resolved


def _copy_root(path: Path) -> Path | None:
    """The package directory of Ray's runtime resources that holds `path`
    (`<temp>/session_*/runtime_resources/<kind>/<package>`), or None."""
    parts = path.parts
    for i, part in enumerate(parts[1:], start=1):
        if part == RUNTIME_RESOURCES and parts[i - 1].startswith("session_"):
            return Path(*parts[: i + 3])
    return None


def _how(key: str, example: str) -> list[str]:
    """What to pass instead, made absolute by the submitting shell's $PWD: the flag, and for a
    setting or a variable the job's environment (Ray's runtime env)."""
    start = "  pass an absolute path on storage that outlives the job, e.g."
    if key.startswith("--"):
        return [f'{start} {key} "{example}"']
    variable = key
    if "." in key:  # a setting: its flag, and its N1V1_<SECTION>__<KEY> variable
        section, _, name = key.partition(".")
        variable = f"N1V1_{section.upper()}__{name.upper()}"
        start += f' --{name.replace("_", "-")} "{example}", or'
    env_vars = json.dumps({"env_vars": {variable: example.replace("$PWD", "/abs")}})
    return [f"{start} {variable} in the job's environment (--runtime-env-json '{env_vars}')"]
