"""A small builder of Grafana dashboard JSON (schema 39): rows of time-series and stat panels
over one Prometheus data source, with the data-source and `Cluster` variables Ray's own dashboards
have (`ray_io_cluster`, which the PodMonitors set; "All" matches series without it, as locally).

Deterministic: the same description always gives the same bytes, so a test can compare the
committed JSON with a fresh rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PanelType = Literal["timeseries", "stat"]


@dataclass(frozen=True, slots=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    unit: str = "short"
    type: PanelType = "timeseries"
    width: int = 12  # of 24 columns
    height: int = 8


@dataclass(frozen=True, slots=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    cluster_metric: str  # a series every cluster exports, for the Cluster variable's values
    rows: tuple[Row, ...]
    tags: tuple[str, ...] = field(default=("n1v1",))

    def panels(self) -> list[Panel]:
        return [p for row in self.rows for p in row.panels]


def _variables(cluster_metric: str) -> list[dict[str, Any]]:
    query = f"label_values({cluster_metric}, ray_io_cluster)"
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "options": [],
        },
        {
            "name": "Cluster",
            "label": "Ray cluster",
            "description": "ray_io_cluster, set by the PodMonitors; All also matches series "
            "without it (a local Ray)",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": "ClusterVariable"},
            "includeAll": True,
            "allValue": ".*",
            "multi": False,
            "current": {"selected": True, "text": "All", "value": "$__all"},
            "hide": 0,
            "refresh": 2,
            "sort": 1,
            "options": [],
        },
    ]


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": t.expr,
            "legendFormat": t.legend or "__auto",
            "range": True,
        }
        for i, t in enumerate(panel.targets)
    ]
    defaults: dict[str, Any] = {"unit": panel.unit}
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.type,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": targets,
    }
    if panel.type == "timeseries":
        out["options"] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        out["options"] = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return out


def render(dashboard: Dashboard) -> str:
    """The dashboard's JSON text (2-space indent, trailing newline)."""
    panels: list[dict[str, Any]] = []
    y, panel_id = 0, 1
    for row in dashboard.rows:
        panels.append(
            {
                "id": panel_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        panel_id, y, x, line_height = panel_id + 1, y + 1, 0, 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel(panel, panel_id, x, y))
            panel_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    doc = {
        "annotations": {"list": []},
        "description": dashboard.description,
        "editable": True,
        "graphTooltip": 1,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": list(dashboard.tags),
        "templating": {"list": _variables(dashboard.cluster_metric)},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": dashboard.title,
        "uid": dashboard.uid,
        "version": 1,
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of a rendered dashboard (rows included)."""
    out = []
    for panel in doc.get("panels", []):
        for nested in [panel, *panel.get("panels", [])]:
            for target in nested.get("targets", []):
                if "expr" in target:
                    out.append((nested.get("title", ""), target["expr"]))
    return out
