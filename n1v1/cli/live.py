"""`n1v1 live --config FILE`: one trading session in the foreground, without Ray or Serve.

The same session, venue and store as the Serve app's Engine replica, for a single machine: the
config file holds the app's arguments (the keys of `serve_config.yaml`'s `args`, n1v1/serve/args.py,
e.g. `feed`, `strategies`, `venue`, `risk`, `store_url`), exchange credentials come from the
environment only (N1V1_EXCHANGE_API_KEY / _SECRET or their _FILE forms: docs/live.md), and the
metrics the cluster's dashboards and alerts read are served on a Prometheus endpoint of its own
(`--metrics-port`, prometheus-client, the same names). Ctrl-C (or SIGTERM) stops it cleanly: the
loop finishes its step, a snapshot is written, the lease is released.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from n1v1.cli.common import EXIT_ERROR, EXIT_OK
from n1v1.config import ConfigError, format_validation_error, read_yaml_mapping

STATUS_EVERY_S = 1.0  # how often the engine's gauges are refreshed from its published status


def add_live_command(sub: Any) -> None:
    p = sub.add_parser(
        "live",
        help="run one trading session in the foreground (paper or live venue), no Ray",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--config", required=True, type=Path, help="the app's arguments (YAML)")
    p.add_argument(
        "--metrics-port", type=int, default=9464, help="Prometheus endpoint (0: none; 9464)"
    )
    p.add_argument("--metrics-host", default="127.0.0.1", help="its address (127.0.0.1)")
    p.set_defaults(handler=cmd_live)


def cmd_live(args: argparse.Namespace) -> int:
    from n1v1.live.metrics_endpoint import serve_metrics, use_prometheus_client
    from n1v1.live.session import TradingSession
    from n1v1.monitoring.recorder import (
        MetricsJournal,
        observe_engine,
        observe_feed_interval,
        observe_predictions,
        observe_step,
    )
    from n1v1.serve.args import AppArgs, feed_interval_s, live_connection, make_feed
    from n1v1.store.availability import open_store

    raw = read_yaml_mapping(args.config, "config file")
    try:
        app = AppArgs.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{args.config}: {format_validation_error(exc, AppArgs)}") from None
    if not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port: {args.metrics_port} is not a port (0 to 65535)")

    use_prometheus_client()
    server = serve_metrics(args.metrics_port, args.metrics_host) if args.metrics_port else None
    store = open_store(app.resolved_store_url())
    live = live_connection(app)
    engine = app.engine
    session = TradingSession(
        app.settings(),
        app.strategies,
        make_feed(app, live.exchange),
        store,
        window=engine.window,
        lease_ttl=engine.lease_ttl_s,
        snapshot_every=engine.snapshot_every,
        snapshots_kept=engine.snapshots_kept,
        journal_wrapper=MetricsJournal,
        on_step=observe_step,
        prediction_timeout_s=engine.prediction_timeout_s,
        on_prediction_failure=engine.on_prediction_failure,
        on_predictions=observe_predictions,
        broker=live.broker,
        poll_s=app.venue.poll_s,
        reconcile_s=app.venue.reconcile_every_s,
    )
    observe_feed_interval(feed_interval_s(app))
    stop = _stop_on_signals()
    venue = app.venue.exchange if app.venue.kind == "live" else "the simulated venue (paper)"
    where = f"http://{args.metrics_host}:{args.metrics_port}/metrics" if server else "off"
    print(f"n1v1 live: trading on {venue}; metrics {where}; Ctrl-C stops", flush=True)
    session.start()
    try:
        while session.alive and not stop["now"]:
            observe_engine(session.snapshot)
            time.sleep(STATUS_EVERY_S if not stop["now"] else 0)
    finally:
        session.stop(timeout=30)
        observe_engine(session.snapshot)
        store.dispose()
        if server is not None:
            server.shutdown()
    snapshot = session.snapshot
    print(
        f"n1v1 live: {session.state} after step {snapshot.get('step', 0)}; equity "
        f"{snapshot.get('equity', float('nan')):,.2f} {snapshot.get('currency') or ''}".rstrip(),
        flush=True,
    )
    if session.state == "failed":
        print(f"n1v1: error: the engine failed: {session.failure}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _stop_on_signals() -> dict[str, bool]:
    """SIGINT and SIGTERM ask for a clean stop (the loop's own thread finishes its step)."""
    flag = {"now": False}

    def ask(_signum: int, _frame: Any) -> None:
        flag["now"] = True

    signal.signal(signal.SIGINT, ask)
    signal.signal(signal.SIGTERM, ask)
    return flag
