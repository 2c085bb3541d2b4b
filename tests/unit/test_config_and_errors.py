from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from services.common.channels import peer_unavailable
from services.common.config import GatewaySettings, Settings, to_sqlalchemy_url
from services.common.errors import AlreadyExists, ConfigError, InvalidArgument

BASE = {"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0", "AIMUSICSTORE_ADMIN_KEY": "k" * 20}


def test_settings_defaults_and_overrides() -> None:
    settings = Settings.from_env(BASE | {"AIMUSICSTORE_VOTE_PORT": "6000", "AIMUSICSTORE_RANKING_TARGET": "ranking:1"})
    assert settings.vote_port == 6000
    assert settings.target("vote") == "127.0.0.1:6000"
    assert settings.target("ranking") == "ranking:1"
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert "k" * 20 not in repr(settings)


@pytest.mark.parametrize("missing", ["DATABASE_URL", "REDIS_URL", "AIMUSICSTORE_ADMIN_KEY"])
def test_required_settings_are_named_when_missing(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


def test_malformed_numbers_are_named() -> None:
    with pytest.raises(ConfigError, match="AIMUSICSTORE_VOTE_PORT"):
        Settings.from_env(BASE | {"AIMUSICSTORE_VOTE_PORT": "eighty"})
    with pytest.raises(ConfigError, match="AIMUSICSTORE_INTERNAL_DEADLINE_S"):
        Settings.from_env(BASE | {"AIMUSICSTORE_INTERNAL_DEADLINE_S": "0"})


def test_short_admin_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="ADMIN_KEY"):
        Settings.from_env(BASE | {"AIMUSICSTORE_ADMIN_KEY": "short"})


def test_gateway_settings_follow_service_ports() -> None:
    gateway = GatewaySettings.from_env({"AIMUSICSTORE_GATEWAY_PORT": "9090", "AIMUSICSTORE_VOTE_PORT": "7000"})
    assert gateway.gateway_port == 9090
    assert gateway.targets()["vote"] == "127.0.0.1:7000"


def test_sqlalchemy_url_keeps_other_drivers() -> None:
    assert to_sqlalchemy_url("postgres://a@b/c") == "postgresql+psycopg://a@b/c"
    assert to_sqlalchemy_url("postgresql+psycopg://a@b/c") == "postgresql+psycopg://a@b/c"


def test_invalid_argument_carries_a_bad_request_detail() -> None:
    status = InvalidArgument("rating", "must be between 1 and 5").to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "rating: must be between 1 and 5"
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "rating"


def test_other_errors_map_to_their_codes() -> None:
    assert AlreadyExists("Already voted").to_status().code == grpc.StatusCode.ALREADY_EXISTS.value[0]


@pytest.mark.parametrize(
    ("code", "reason"),
    [(grpc.StatusCode.DEADLINE_EXCEEDED, "did not answer in time"), (grpc.StatusCode.UNAVAILABLE, "is unreachable")],
)
def test_a_failed_peer_call_is_a_retryable_error_saying_why(code: grpc.StatusCode, reason: str) -> None:
    failure = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")
    error = peer_unavailable("check the item", "catalog service", failure)
    assert error.code == grpc.StatusCode.UNAVAILABLE
    assert error.message == f"cannot check the item right now (the catalog service {reason}); retry"
