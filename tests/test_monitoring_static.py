"""The monitoring sources agree with each other and with the code, without a Prometheus:

- the generated files under kuberay/monitoring/ are what n1v1/monitoring/ renders (no drift);
- every `ray_n1v1_*` series a dashboard panel or an alert reads is a metric of the catalogue
  (n1v1/monitoring/catalog.py) with the suffix its type gets, filtered and grouped only by labels
  it has; every catalogue metric is on a dashboard and is created by the code that emits it;
- each alert's probes are parts of its expression, and docs/monitoring.md has its runbook section
  and the catalogue's metric table.

The rule for a change that adds or renames a metric: catalogue, emitting code, dashboards, alerts
and their tests in the same commit; this test and tests/test_monitoring_prometheus.py enforce it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from monitoring_support import MONITORING, ROOT

from n1v1.ml.train_metrics import _metrics as training_metrics
from n1v1.monitoring.alerts import ALERTS
from n1v1.monitoring.catalog import BY_NAME, METRICS, RAY_LABELS, SCRAPE_LABELS, SERIES
from n1v1.monitoring.dashboards import DASHBOARDS
from n1v1.monitoring.generate import render_all, stale
from n1v1.monitoring.grafana import queries
from n1v1.monitoring.promql import series_names
from n1v1.serve.metrics import metrics as serving_metrics

DOCS = ROOT / "docs" / "monitoring.md"
# Ray Serve's own series the alerts and panels read (the real-Prometheus test sees them exported),
# with the tag keys Ray gives them.
RAY_SERVE = {
    "ray_serve_deployment_status": {"application", "deployment"},
    "ray_serve_application_status": {"application"},
    "ray_serve_deployment_replica_healthy": {"application", "deployment", "replica"},
}
MATCHERS = re.compile(r"\b(ray_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*')
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")


def all_queries() -> list[tuple[str, str]]:
    """(where, expression) of every dashboard target and every alert expression."""
    out = []
    for dashboard in DASHBOARDS:
        doc = json.loads((MONITORING / "dashboards" / f"{dashboard.uid}.json").read_text())
        out += [(f"{dashboard.title} / {title}", expr) for title, expr in queries(doc)]
    out += [(f"alert {a.name}", a.expr) for a in ALERTS]
    return out


def labels_of(series: str) -> set[str]:
    if series in RAY_SERVE:
        return RAY_SERVE[series]
    spec = SERIES[series]
    return set(spec.tags) | ({"le"} if series.endswith("_bucket") else set())


def test_generated_files_match_their_sources() -> None:
    assert stale(ROOT) == [], "run `python -m n1v1.monitoring.generate`"
    assert len(render_all()) == 5


def test_a_hand_edit_of_a_generated_file_is_caught(tmp_path: Path) -> None:
    for path, text in render_all().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    assert stale(tmp_path) == []
    trading = tmp_path / "kuberay/monitoring/dashboards/n1v1-trading.json"
    trading.write_text(trading.read_text().replace("ray_n1v1_equity", "ray_n1v1_equity_typo"))
    assert stale(tmp_path) == [Path("kuberay/monitoring/dashboards/n1v1-trading.json")]


def test_every_series_a_query_reads_is_a_catalogue_metric_with_its_types_suffix() -> None:
    unknown = [
        (where, name)
        for where, expr in all_queries()
        for name in series_names(expr)
        if name not in SERIES and name not in RAY_SERVE
    ]
    assert unknown == []


def test_queries_filter_and_group_only_by_labels_the_series_have() -> None:
    every_tag = {t for m in METRICS for t in m.tags} | {"le"}
    every_tag |= {t for tags in RAY_SERVE.values() for t in tags}
    allowed_everywhere = RAY_LABELS | SCRAPE_LABELS
    wrong = []
    for where, expr in all_queries():
        for series, body in MATCHERS.findall(expr):
            if series not in SERIES and series not in RAY_SERVE:
                continue  # an unknown series is the previous test's failure
            for matcher in filter(str.strip, body.split(",")):
                match = MATCHER.fullmatch(matcher)
                assert match, f"{where}: cannot read matcher {matcher!r}"
                label = match.group(1)
                if label not in labels_of(series) | allowed_everywhere:
                    wrong.append((where, series, label))
        for group in GROUPING.findall(expr):
            for label in filter(None, (g.strip() for g in group.split(","))):
                if label not in every_tag | allowed_everywhere:
                    wrong.append((where, "by/on", label))
    assert wrong == []


def test_every_catalogue_metric_is_on_a_dashboard() -> None:
    shown = {
        SERIES[name].name
        for d in DASHBOARDS
        for p in d.panels()
        for t in p.targets
        for name in series_names(t.expr)
        if name in SERIES
    }
    assert sorted(set(BY_NAME) - shown) == []


def test_the_code_creates_every_catalogue_metric_once() -> None:
    serving, training = set(serving_metrics()), set(training_metrics())
    assert serving.isdisjoint(training)
    assert serving | training == set(BY_NAME)
    assert training == {m.name for m in METRICS if m.source == "training"}


def test_alert_probes_are_parts_of_their_expressions() -> None:
    assert len({a.name for a in ALERTS}) == len(ALERTS)
    for alert in ALERTS:
        assert alert.probes, alert.name
        for probe in alert.probes:
            assert probe in alert.expr, (alert.name, probe)
        assert alert.summary and alert.description and alert.severity in ("critical", "warning")


def test_the_docs_have_a_runbook_section_per_alert() -> None:
    text = DOCS.read_text()
    headings = re.findall(r"^## runbook: (\S+)$", text, flags=re.M)
    assert headings == [a.name for a in ALERTS]
    for alert in ALERTS:
        anchor = alert.runbook_url.split("#", 1)[1]
        assert anchor == "runbook-" + alert.name.lower()  # GitHub's anchor of that heading


def test_the_docs_metric_table_is_the_catalogue() -> None:
    rows = re.findall(
        r"^\| `(n1v1_[a-z0-9_]+)` \| (counter|gauge|histogram) \| ([^|]*) \| (\w+) \|",
        DOCS.read_text(),
        flags=re.M,
    )
    documented = [
        (
            name,
            kind,
            tuple(t.strip() for t in tags.split(",") if t.strip() and t.strip() != "-"),
            source,
        )
        for name, kind, tags, source in rows
    ]
    assert documented == [(m.name, m.kind, m.tags, m.source) for m in METRICS]
