"""GET /api/v1/alerts against a real Prometheus (Debian's package) that evaluates the rule file
the cluster runs: a metrics endpoint of the test's own reports venue rejections climbing fast, the
N1V1OrderRejections alert fires, and the route shows it, as the dashboard's health panel does.
No Ray: the route only reads Prometheus."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from dashboard_api import free_port, serve_app
from monitoring_support import MONITORING, require_tool

from n1v1.monitoring.prometheus import LocalPrometheus
from n1v1.serve.api import create_api, hash_token
from n1v1.store import create_store

TOKEN = "alerts-token-0123456789abcdef"
RULES = MONITORING / "rules" / "n1v1-alerts.yaml"


class _Rejections(BaseHTTPRequestHandler):
    """Prometheus text format: 5 more rejected orders at every scrape."""

    count = 0

    def do_GET(self) -> None:
        type(self).count += 5
        body = (
            "# TYPE ray_n1v1_orders_rejected_total counter\n"
            f'ray_n1v1_orders_rejected_total{{symbol="BTC/USDT",side="buy"}} {self.count}\n'
            "# TYPE ray_n1v1_orders_submitted_total counter\n"
            f'ray_n1v1_orders_submitted_total{{symbol="BTC/USDT",side="buy"}} {self.count}\n'
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[LocalPrometheus]:
    binary = require_tool("prometheus")
    metrics = ThreadingHTTPServer(("127.0.0.1", 0), _Rejections)
    threading.Thread(target=metrics.serve_forever, daemon=True).start()
    prom = LocalPrometheus(binary, free_port(), tmp_path / "prometheus")
    target = f"127.0.0.1:{metrics.server_address[1]}"
    try:
        prom.start(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "n1v1",
                        "static_configs": [{"targets": [target], "labels": {"namespace": "n1v1"}}],
                    }
                ],
            }
        )
        yield prom
    finally:
        prom.stop()
        metrics.shutdown()


def test_the_alerts_firing_in_prometheus_are_shown(
    prometheus: LocalPrometheus, tmp_path: Path
) -> None:
    deadline = time.monotonic() + 60
    while True:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        if any(a["labels"]["alertname"] == "N1V1OrderRejections" for a in alerts):
            break
        assert time.monotonic() < deadline, f"no alert after 60 s: {prometheus.log_tail()}"
        time.sleep(0.5)
    store = create_store(f"sqlite:///{tmp_path}/s.db")
    try:
        for url, available in (
            (prometheus.url, True),
            (None, False),
            ("http://127.0.0.1:9", False),
        ):
            app = create_api(None, store, admin_token_hash=hash_token(TOKEN), prometheus_url=url)  # type: ignore[arg-type]
            with serve_app(app) as base:
                answer = requests.get(
                    f"{base}/api/v1/alerts",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=10,
                ).json()
            assert answer["available"] is available, answer
            if not available:
                assert answer["reason"]
                continue
            (alert,) = [a for a in answer["alerts"] if a["name"] == "N1V1OrderRejections"]
            assert alert["state"] in ("firing", "pending") and alert["severity"] == "warning"
            assert alert["labels"] == {"namespace": "n1v1"}
            assert alert["summary"].startswith("The venue rejected ")
    finally:
        store.dispose()
