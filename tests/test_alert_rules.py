"""The alert rules through Prometheus' own tool: `promtool check rules` on the generated rule file,
and `promtool test rules` on tests/promtool/<Alert>.test.yaml, where each alert has a case that
fires it (with its exact labels and rendered annotations) and one that keeps it quiet.

promtool comes from Debian's `prometheus` package (.ci/run installs it); without it these tests
fail in CI (CI_REQUIRE_SHARED=1) and skip with that reason elsewhere.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from monitoring_support import MONITORING, ROOT, require_tool

from n1v1.monitoring.alerts import ALERTS

RULES = MONITORING / "rules" / "n1v1-alerts.yaml"
TESTS = ROOT / "tests" / "promtool"


def test_promtool_checks_the_rule_file() -> None:
    promtool = require_tool("promtool")
    out = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    """One file per alert; in it, a case expecting the alert and one expecting silence at a time
    when its input series exist (an empty case would prove nothing)."""
    assert sorted(p.name for p in TESTS.glob("*.test.yaml")) == sorted(
        f"{a.name}.test.yaml" for a in ALERTS
    )
    for alert in ALERTS:
        doc = yaml.safe_load((TESTS / f"{alert.name}.test.yaml").read_text())
        assert doc["rule_files"] == ["../../kuberay/monitoring/rules/n1v1-alerts.yaml"]
        fires = quiet = 0
        for case in doc["tests"]:
            assert case["input_series"], f"{alert.name}: {case['name']} has no input"
            for check in case["alert_rule_test"]:
                assert check["alertname"] == alert.name, f"{alert.name}: {case['name']}"
                if check["exp_alerts"]:
                    fires += 1
                    for expected in check["exp_alerts"]:
                        assert expected["exp_labels"]["severity"] == alert.severity
                        assert expected["exp_annotations"]["runbook_url"] == alert.runbook_url
                else:
                    quiet += 1
        assert fires >= 1 and quiet >= 1, f"{alert.name}: {fires} firing, {quiet} quiet checks"


def test_promtool_runs_the_alert_unit_tests() -> None:
    promtool = require_tool("promtool")
    files = sorted(str(p.relative_to(TESTS)) for p in TESTS.glob("*.test.yaml"))
    out = subprocess.run(
        [promtool, "test", "rules", *files],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=TESTS,
    )
    if out.returncode != 0:
        pytest.fail(f"promtool test rules failed:\n{out.stdout[-6000:]}\n{out.stderr[-2000:]}")
    assert out.stdout.count("SUCCESS") == len(files)
