"""The gateway's rate limits per client address, through the real Envoy
(gateway/rate_limits.py): 429 with Retry-After and the JSON error body,
RESOURCE_EXHAUSTED for gRPC, one bucket per client address (taken from
X-Forwarded-For only through the trusted hops), edge-cached reads counted.

Also the registrations counted per client address
(services/reputation/registrations.py), which need addresses of their own.

One stack of its own, with small limits and one trusted proxy hop; the
hops=0 case restarts its Envoy with the default."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import httpx
import pytest

from aimusicstore.reputation.v1 import agent_service_pb2, agent_service_pb2_grpc
from devstack.stack import Stack
from services.common.credentials import CLIENT_ADDRESS_KEY
from tests.integration.conftest import eventually, running_stack

REGISTRATIONS_PER_MIN = 3
READS_PER_MIN = 20


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("limited"),
        redis_db=6,
        AIMUSICSTORE_XFF_TRUSTED_HOPS="1",
        AIMUSICSTORE_RATE_LIMIT_REGISTRATIONS_PER_MIN=str(REGISTRATIONS_PER_MIN),
        AIMUSICSTORE_RATE_LIMIT_READS_PER_MIN=str(READS_PER_MIN),
        AIMUSICSTORE_SONG_QUOTA_FREE="1",
        # Agents from one address past the first share the probation weight.
        AIMUSICSTORE_REGISTRATION_CROWD_FREE="1",
    ) as running:
        yield running


@pytest.fixture
def api(limited: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.gateway_url, timeout=10) as client:
        yield client


_addresses = itertools.count(1)


def client_address() -> str:
    """An address of the TEST-NET-3 block no other test uses: a fresh bucket.
    Counted, not drawn at random: two tests drawing the same address of the
    254 shared a bucket already drained (a flake seen under load)."""
    n = next(_addresses)
    assert n <= 254, "out of TEST-NET-3 addresses"
    return f"203.0.113.{n}"


def register(api: httpx.Client, forwarded_for: str) -> httpx.Response:
    return api.post("/api/v1/agents", json={}, headers={"x-forwarded-for": forwarded_for})


def test_registrations_past_the_limit_are_429_with_retry_after_and_the_json_error(api: httpx.Client) -> None:
    address = client_address()
    for _ in range(REGISTRATIONS_PER_MIN):
        assert register(api, address).status_code == 200
    refused = register(api, address)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # one registration every 60/3 s
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {
        "code": 8,
        "message": "too many requests: the limit is 3 registrations a minute per client address; retry in 20 s",
    }
    # Per class: the same address still reads.
    assert api.get("/api/v1/songs", headers={"x-forwarded-for": address}).status_code == 200


def test_each_client_address_has_its_own_bucket(api: httpx.Client) -> None:
    first, second = client_address(), client_address()
    for _ in range(REGISTRATIONS_PER_MIN):
        assert register(api, first).status_code == 200
    assert register(api, first).status_code == 429
    # With one trusted hop the client address is X-Forwarded-For's last
    # entry, the one our proxy appended: what the client put before it is
    # not trusted.
    assert register(api, second).status_code == 200
    assert register(api, f"{second}, {first}").status_code == 429
    assert register(api, f"{first}, {second}").status_code == 200


def test_grpc_calls_share_the_bucket_and_get_resource_exhausted(limited: Stack, api: httpx.Client) -> None:
    address = client_address()
    for _ in range(REGISTRATIONS_PER_MIN - 1):
        assert register(api, address).status_code == 200
    with grpc.insecure_channel(f"127.0.0.1:{limited.gateway_port}") as channel:
        agents = agent_service_pb2_grpc.AgentServiceStub(channel)
        request = agent_service_pb2.RegisterAgentRequest()
        agents.RegisterAgent(request, metadata=[("x-forwarded-for", address)], timeout=5)
        with pytest.raises(grpc.RpcError) as refused:
            agents.RegisterAgent(request, metadata=[("x-forwarded-for", address)], timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "too many requests: the limit is 3 registrations a minute per client address; retry in 20 s"
    )
    assert register(api, address).status_code == 429


def test_edge_cached_reads_count_against_the_read_limit(api: httpx.Client) -> None:
    address = client_address()
    replies = [api.get("/api/v1/trending", headers={"x-forwarded-for": address}) for _ in range(READS_PER_MIN)]
    assert [r.status_code for r in replies] == [200] * READS_PER_MIN
    # Most were answered by the edge cache, before any service saw them.
    assert any("age" in r.headers for r in replies)
    refused = api.get("/api/v1/trending", headers={"x-forwarded-for": address})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "3"
    assert refused.json()["message"].startswith("too many requests: the limit is 20 requests a minute")
    assert api.get("/api/v1/trending", headers={"x-forwarded-for": client_address()}).status_code == 200


def test_without_trusted_hops_a_forged_x_forwarded_for_buys_no_bucket(limited: Stack, api: httpx.Client) -> None:
    limited.env_overrides["AIMUSICSTORE_XFF_TRUSTED_HOPS"] = "0"  # the default
    try:
        limited.restart("envoy")  # and fresh buckets
        limited.wait_healthy()
        for _ in range(REGISTRATIONS_PER_MIN):
            assert register(api, client_address()).status_code == 200
        # Every request came from 127.0.0.1, whatever the header said.
        assert register(api, client_address()).status_code == 429
        assert api.post("/api/v1/agents", json={}).status_code == 429
    finally:
        limited.env_overrides["AIMUSICSTORE_XFF_TRUSTED_HOPS"] = "1"
        limited.restart("envoy")
        limited.wait_healthy()


def test_the_daily_song_quota_is_a_429_of_its_own_with_retry_after_the_reset(api: httpx.Client) -> None:
    address = client_address()
    key = register(api, address).json()["api_key"]
    headers = {"x-forwarded-for": address, "authorization": f"Bearer {key}"}
    song = {"title": "One a day", "artist": "A", "platform": "udio"}
    assert api.post("/api/v1/songs", json=song, headers=headers).status_code == 200
    refused = api.post("/api/v1/songs", json=song, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == 8
    assert refused.json()["message"].startswith("daily song submission quota of 1 for the free tier is used up")
    assert 0 < int(refused.headers["retry-after"]) <= 86400


def test_agents_registered_from_one_address_share_the_probation_weight_in_the_charts(
    limited: Stack, api: httpx.Client
) -> None:
    address, elsewhere, reader = client_address(), client_address(), client_address()
    agents = [register(api, address).json() for _ in range(3)]
    # With one agent free per address (this stack), the n-th weighs 1/n.
    assert [a["agent"]["weight"] for a in agents] == [0.25, 0.125, pytest.approx(0.25 / 3)]
    assert {a["agent"]["standing"] for a in agents} == {"probation"}
    # The address is the gateway's to say: a client naming another is not believed.
    forged = {"x-forwarded-for": elsewhere, CLIENT_ADDRESS_KEY: address}
    assert api.post("/api/v1/agents", json={}, headers=forged).json()["agent"]["weight"] == 0.25
    with grpc.insecure_channel(f"127.0.0.1:{limited.gateway_port}") as channel:
        registered = agent_service_pb2_grpc.AgentServiceStub(channel).RegisterAgent(
            agent_service_pb2.RegisterAgentRequest(), metadata=list(forged.items()), timeout=5
        )
    assert registered.agent.weight == 0.125  # the second from `elsewhere`, not the fourth from `address`
    # The ranking service counts the third agent's vote at its weight.
    third = {"x-forwarded-for": address, "authorization": f"Bearer {agents[2]['api_key']}"}
    song = api.post("/api/v1/songs", json={"title": "Crowded", "artist": "A", "platform": "udio"}, headers=third)
    assert song.status_code == 200
    vote = {"item_type": "song", "item_id": song.json()["id"], "vote": "up"}
    assert api.post("/api/v1/vote", json=vote, headers=third).status_code == 200

    def weighted_score() -> float | None:
        chart = api.get("/api/v1/top/daily", params={"limit": 100}, headers={"x-forwarded-for": reader}).json()
        scores = [e["weighted_score"] for e in chart["entries"] if e["item_id"] == vote["item_id"]]
        return scores[0] if scores else None

    assert eventually(weighted_score, 5.0, interval_s=0.3) == pytest.approx(0.25 / 3, abs=1e-6)
