"""Each setting is declared once (services/common/config.py); the README's
table is generated from the declarations and must not drift from them."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from services.common.config import SERVICE_SETTINGS, GatewaySettings, Settings, VoteSettings, markdown_table
from services.common.errors import ConfigError

README = Path(__file__).resolve().parents[2] / "README.md"
BASE = {"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0", "AIMUSICSTORE_ADMIN_KEY": "k" * 20}


def test_the_readme_table_is_generated_from_the_declarations() -> None:
    text = README.read_text()
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert found, "README.md lost its settings markers"
    assert found.group(1) == markdown_table(), "README.md is stale: run `python scripts/settings_table.py`"


def test_every_setting_declares_an_environment_variable_and_a_meaning() -> None:
    for cls in (*SERVICE_SETTINGS.values(), GatewaySettings):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("env"), f"{cls.__name__}.{f.name} has no environment variable"
    for f in dataclasses.fields(Settings):
        assert f.metadata["doc"], f"{f.name} is undocumented"


def test_a_service_reads_its_own_section_and_the_shared_one() -> None:
    vote = VoteSettings.from_env(BASE | {"AIMUSICSTORE_QUOTA_FREE": "7", "AIMUSICSTORE_VOTE_METRICS_PORT": "9"})
    assert vote.quota_free == 7 and vote.metrics_port == 9
    ranking = SERVICE_SETTINGS["ranking"].from_env(BASE | {"AIMUSICSTORE_VOTE_METRICS_PORT": "9"})
    assert ranking.metrics_port == 0
    assert not hasattr(ranking, "quota_free")


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("AIMUSICSTORE_QUOTA_FREE", "-1", "at least 0"),
        ("AIMUSICSTORE_ABUSE_BURST_MAX", "ten", "whole number"),
        ("AIMUSICSTORE_RECONCILE_INTERVAL_S", "-2", "positive"),
    ],
)
def test_bad_values_name_the_variable(name: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} must be.*{message}|{name} must be {message}"):
        SERVICE_SETTINGS["vote"].from_env(BASE | {name: raw})


def test_booleans_and_upper_cased_levels() -> None:
    assert GatewaySettings.from_env({"AIMUSICSTORE_GATEWAY_ACCESS_LOG": "off"}).access_log is False
    with pytest.raises(ConfigError, match="on or off"):
        GatewaySettings.from_env({"AIMUSICSTORE_GATEWAY_ACCESS_LOG": "maybe"})
    assert Settings.from_env(BASE | {"AIMUSICSTORE_LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_pre_commit_runs_what_make_lint_runs() -> None:
    import yaml

    root = README.parent
    hooks = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    entries = {hook["entry"] for hook in hooks}
    lint = (root / "Makefile").read_text().split("\nlint:", 1)[1].split("\n\n", 1)[0]
    for command in ("ruff check", "ruff format --check", "mypy", "scripts/buf.sh lint"):
        assert command in lint, f"make lint no longer runs {command}"
        assert any(command in entry for entry in entries), f"pre-commit does not run {command}"
