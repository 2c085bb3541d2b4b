"""The alert rules parse and fire as designed (promtool, from Debian's prometheus package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run installs Debian's prometheus package")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def _run(*args: str) -> str:
    result = subprocess.run([_promtool(), *args], capture_output=True, text=True, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_alert_rules_are_valid() -> None:
    assert "SUCCESS" in _run("check", "rules", "alerts.yaml")


def test_alert_rules_fire_on_the_series_that_should_trip_them() -> None:
    assert "SUCCESS" in _run("test", "rules", "alerts.test.yaml")


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    config = (MONITORING / "prometheus.yaml").read_text()
    shutil.copy(MONITORING / "alerts.yaml", tmp_path / "alerts.yaml")
    (tmp_path / "prometheus.yaml").write_text(config.replace("/etc/prometheus/alerts.yaml", "alerts.yaml"))
    result = subprocess.run(
        [_promtool(), "check", "config", "prometheus.yaml"], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_grafana_json_with_a_query_in_every_panel() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
