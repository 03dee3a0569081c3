"""Small PromQL builders shared by the alert rules and the dashboards, so an idiom is written once.

`recent` counts what a counter added within a window *including a series born in it*. Ray creates
a counter's series at its first increment, so a series can appear already at 1 (the first failed
training run, the first rejected order), and `increase()` alone never counts that first value: it
only sees differences between samples. A series that did not exist one window ago contributes its
whole value instead; every other series contributes its `increase()`. That whole value is only
trusted while Prometheus itself has a window of history (`up`, which Prometheus records for every
target, existed one window ago): a Prometheus that just started sees every old counter as new,
and would otherwise count a week of rejections as a burst.
"""

from __future__ import annotations

import re

SERIES = re.compile(r"\bray_[a-z0-9_]+")  # every Ray-exported series name in an expression
CLUSTER = 'ray_io_cluster=~"$Cluster"'  # the dashboards' cluster filter (a Grafana variable)


def sel(series: str, *matchers: str) -> str:
    """`series{m1,m2}` (or the bare name without matchers)."""
    return f"{series}{{{','.join(matchers)}}}" if matchers else series


def max_by(labels: str, expr: str) -> str:
    return f"max by ({labels}) ({expr})"


def recent(selector: str, window: str) -> str:
    """Per series: the whole value of a series born within `window` (once Prometheus has that
    much history), else its increase."""
    born = f"({selector} unless {selector} offset {window})"
    return f"({born} and on () (count(up offset {window}) > 0)) or increase({selector}[{window}])"


def series_names(expr: str) -> set[str]:
    """The Ray-exported series names an expression reads (`ray_...`; not the label
    `ray_io_cluster`, which a scrape adds)."""
    return set(SERIES.findall(expr)) - {"ray_io_cluster"}
