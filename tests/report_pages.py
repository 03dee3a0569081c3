"""Reading an HTML report's charts back: the specs n1v1/backtest/charts.py embeds in the page."""

from __future__ import annotations

import json
import re
from typing import Any


def chart_specs(page: str) -> dict[str, dict[str, Any]]:
    """The page's chart specs by chart id (empty when it has no chart)."""
    found = re.search(
        r'<script type="application/json" id="n1v1-charts">(.*?)</script>', page, re.S
    )
    return {} if found is None else {c["id"]: c for c in json.loads(found.group(1))}


def markers(chart: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [m for m in chart["markers"] if m["kind"] == kind]


def breaks(series: dict[str, Any]) -> list[int]:
    """The times where a line is broken (a gap in the data)."""
    return [row[0] for row in series["data"] if row[1] is None]


def markup(page: str) -> str:
    """The page without its scripts' contents (the inlined charting library has SVG in strings)."""
    return re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", page, flags=re.S)
