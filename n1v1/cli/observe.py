"""`n1v1 observe` (`make observe`): a local Prometheus over the Ray of a running `make run`.

It reads where `n1v1 paper` keeps its Ray (`var/paper.json`: the head's temp dir), points a
Prometheus scrape config at the service-discovery file Ray writes there (every node's metrics
export port, 8080 under `make run`, plus the autoscaler's and dashboard's), loads the alert rules
generated into kuberay/monitoring/rules/, and runs Debian's `prometheus` in the foreground until
Ctrl-C. Its data stays in `var/prometheus/` between runs. docs/monitoring.md has the details.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from n1v1.cli.common import EXIT_ERROR, EXIT_OK
from n1v1.cli.local_ray import port_in_use
from n1v1.cli.paper import RUN_FILE, _app_args, _state_dir

RULES = Path("kuberay") / "monitoring" / "rules" / "n1v1-alerts.yaml"
SCRAPE_S = 5.0


def add_observe_command(sub: Any) -> None:
    p = sub.add_parser(
        "observe",
        help="run Prometheus (with N1V1's alert rules) on the local Ray of `make run`",
    )
    p.add_argument("--config", type=Path, default=Path("serve_config.yaml"), help="Serve config")
    p.add_argument("--port", type=int, default=9090, help="Prometheus' web port (127.0.0.1)")
    p.add_argument(
        "--ray-temp-dir",
        type=Path,
        help="the temp dir of another local Ray head (`ray start --temp-dir`) instead",
    )
    p.add_argument("--rules", type=Path, default=RULES, help="alert rule file")
    p.add_argument("--prometheus", default="prometheus", help="the prometheus binary")
    p.set_defaults(handler=cmd_observe)


def _ray_temp_dir(args: argparse.Namespace, state: Path) -> Path:
    if args.ray_temp_dir is not None:
        return Path(args.ray_temp_dir)
    try:
        run = json.loads((state / RUN_FILE).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no `make run` is running from this folder ({state / RUN_FILE} is missing): start "
            "it first, or name another Ray with --ray-temp-dir"
        ) from None
    if "ray_temp_dir" not in run:
        raise FileNotFoundError(
            f"{state / RUN_FILE} was written by an older `n1v1 paper`: restart `make run`, or "
            "name its Ray with --ray-temp-dir"
        )
    return Path(run["ray_temp_dir"])


def cmd_observe(args: argparse.Namespace) -> int:
    from n1v1.monitoring.prometheus import (
        LocalPrometheus,
        PrometheusError,
        config,
        service_discovery_file,
    )

    app_args, _ = _app_args(args.config)
    state = _state_dir(app_args)
    sd_file = service_discovery_file(_ray_temp_dir(args, state))  # OSError: `n1v1: error: ...`
    problems = []
    if not sd_file.is_file():
        problems.append(f"{sd_file} not found: is that Ray running, with a metrics export port?")
    if not args.rules.is_file():
        problems.append(f"{args.rules} not found: run from the repository's folder")
    binary = shutil.which(args.prometheus)
    if binary is None:
        problems.append(
            f"`{args.prometheus}` not found: install Debian's prometheus (apt-get install "
            "prometheus), or name the binary with --prometheus"
        )
    if port_in_use(args.port):
        problems.append(f"port {args.port} is in use (a Prometheus service?): choose --port")
    for problem in problems:
        print(f"n1v1: error: {problem}", file=sys.stderr)
    if problems:
        return EXIT_ERROR
    assert binary is not None
    prometheus = LocalPrometheus(binary, args.port, state / "prometheus")
    settings = config(sd_file, [args.rules.resolve()], interval_s=SCRAPE_S)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        prometheus.start(settings)
        print(
            f"Prometheus: {prometheus.url} (alerts {prometheus.url}/alerts, targets "
            f"{prometheus.url}/targets), scraping the Ray listed in {sd_file} every "
            f"{SCRAPE_S:g} s, rules from {args.rules}; data in {prometheus.work_dir}. "
            "Ctrl-C stops it.",
            flush=True,
        )
        assert prometheus.process is not None
        code = prometheus.process.wait()
        print(
            f"n1v1: error: prometheus exited with status {code}: {prometheus.log_tail()}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    except PrometheusError as exc:
        print(f"n1v1: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nStopping Prometheus ...", flush=True)
        return EXIT_OK
    finally:
        prometheus.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
