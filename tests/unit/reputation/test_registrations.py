"""Registrations from one client address: the address key (masking, exempt
networks, malformed input), the share of the probation weight the n-th
agent from one address keeps, and the domain's registration counting and
publishing the weights of a crowded agent (against the in-memory fakes)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from services.common.config import ReputationSettings
from services.common.errors import ConfigError
from services.reputation.registrations import AddressCounting, crowd_share, networks
from services.reputation.standing import FLAGGED, PROBATION, TRUSTED, Weights
from tests.unit.reputation.fakes import POLICY, T0, world

COUNTING = AddressCounting(window=timedelta(hours=24), exempt=networks("127.0.0.0/8,::1/128"), hash_key=b"k")


def test_the_first_agents_from_an_address_keep_the_probation_weight_and_the_rest_share_it() -> None:
    assert [crowd_share(n, free=3) for n in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert crowd_share(4, free=3) == 0.75
    assert crowd_share(300, free=3) == 0.01
    # 500 agents from one machine weigh as about 18 on probation, not 500.
    assert 17 < sum(crowd_share(n, free=3) for n in range(1, 501)) < 19


def test_only_probation_is_shared_trust_and_flags_are_not() -> None:
    assert POLICY.chart_weight(PROBATION, registration_crowd=6) == 0.25 * 3 / 6
    assert POLICY.weights(PROBATION, 500, registration_crowd=6) == Weights(0.125, 0.125 * 3)
    assert POLICY.chart_weight(TRUSTED, registration_crowd=6) == 1.0
    assert POLICY.chart_weight(FLAGGED, registration_crowd=6) == 0.0
    assert POLICY.chart_weight(PROBATION) == 0.25


def test_one_address_one_key_and_ipv6_counts_per_64() -> None:
    key = COUNTING.key("203.0.113.7")
    assert key is not None and len(key) == 16
    assert COUNTING.key(" 203.0.113.7 ") == key
    assert COUNTING.key("::ffff:203.0.113.7") == key  # IPv4 mapped into IPv6
    assert COUNTING.key("203.0.113.8") != key
    assert COUNTING.key("2001:db8:1:2::1") == COUNTING.key("[2001:db8:1:2:ffff::9]")
    assert COUNTING.key("2001:db8:1:3::1") != COUNTING.key("2001:db8:1:2::1")
    # IPv4 clients reached through NAT64 are their IPv4 address, not one /64 for all.
    assert COUNTING.key("64:ff9b::203.0.113.7") == key
    assert COUNTING.key("64:ff9b::203.0.113.8") != key
    # Keyed: another deployment's key tells nothing of this one's addresses.
    assert dataclasses.replace(COUNTING, hash_key=b"other").key("203.0.113.7") != key


@pytest.mark.parametrize("address", [None, "", "127.0.0.1", "127.8.9.10", "::1", "not an address", "1.2.3.4:80"])
def test_unknown_exempt_or_malformed_addresses_are_not_counted(address: str | None) -> None:
    assert COUNTING.key(address) is None


def test_the_settings_build_the_counting_and_name_a_bad_network() -> None:
    env = {"AIMUSICSTORE_ADMIN_KEY": "x" * 16, "DATABASE_URL": "postgresql://db/x", "REDIS_URL": "redis://r"}
    settings = ReputationSettings.from_env(env)
    counting = AddressCounting.from_settings(settings)
    assert counting.window == timedelta(hours=24) and counting.key("127.0.0.1") is None
    assert counting.key("10.1.2.3") is not None  # private addresses are clients too (behind a declared proxy)
    with pytest.raises(ConfigError, match="AIMUSICSTORE_REGISTRATION_CROWD_EXEMPT.*'10.0.0.0/33'"):
        AddressCounting.from_settings(dataclasses.replace(settings, registration_crowd_exempt="10.0.0.0/33"))
    with pytest.raises(ConfigError, match="AIMUSICSTORE_REGISTRATION_CROWD_WINDOW_H"):
        AddressCounting.from_settings(dataclasses.replace(settings, registration_crowd_window_h=1e300))


async def test_registrations_from_one_address_are_counted_and_the_crowded_ones_published_lighter() -> None:
    w = world(addresses=COUNTING)
    crowds = [(await w.agents.register(f"a{n}", "", "203.0.113.7"))[0].registration_crowd for n in range(5)]
    assert crowds == [1, 2, 3, 4, 5]
    other, _ = await w.agents.register("elsewhere", "", "198.51.100.1")
    local, _ = await w.agents.register("local", "", "127.0.0.1")
    internal, _ = await w.agents.register("internal", "", None)
    assert (other.registration_crowd, local.registration_crowd, internal.registration_crowd) == (1, 1, 1)
    # The first three weigh the default an unpublished agent has; the 4th and
    # 5th are published before they can vote, without an announcement.
    assert w.weights.chart == {"a3": 0.25 * 3 / 4, "a4": 0.25 * 3 / 5}
    assert not [call for call in w.calls if call[0] not in ("chart", "trending")]
    assert w.agents.standing(await w.agents.get("a4")) == (PROBATION, 0.25 * 3 / 5)


async def test_registrations_older_than_the_window_are_not_counted() -> None:
    w = world(addresses=COUNTING)
    for n in range(3):
        await w.agents.register(f"old{n}", "", "203.0.113.7")
    w.agents.clock = lambda: T0 + timedelta(hours=25)
    fresh, _ = await w.agents.register("fresh", "", "203.0.113.7")
    assert fresh.registration_crowd == 1


async def test_without_counting_every_registration_is_alone() -> None:
    w = world()
    crowds = [(await w.agents.register(f"a{n}", "", "203.0.113.7"))[0].registration_crowd for n in range(5)]
    assert crowds == [1] * 5


async def test_a_crowded_agent_is_registered_even_when_its_weights_cannot_be_published() -> None:
    w = world(addresses=COUNTING)
    for n in range(4):
        await w.agents.register(f"a{n}", "", "203.0.113.7")

    async def redis_away(chart: object, trending: object) -> None:
        raise ConnectionError("redis is away")

    w.weights.publish_weights = redis_away  # type: ignore[method-assign]
    agent, key = await w.agents.register("a4", "", "203.0.113.7")
    assert agent.registration_crowd == 5 and key
    assert "a4" not in w.weights.chart  # its votes would count the full probation weight
    # The periodic pass publishes it, and announces it (the ranking service
    # re-weighs what it voted meanwhile): its published weight was wrong.
    del w.weights.publish_weights
    await w.agents.recompute_all()
    assert w.weights.chart["a4"] == 0.25 * 3 / 5
    assert ("agent changed", "a4") in w.calls


async def test_a_crowd_of_a_hundred_from_one_address_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    w = world(addresses=COUNTING)
    for n in range(101):
        await w.agents.register(f"a{n}", "", "203.0.113.7")
    warnings = [r.getMessage() for r in caplog.records if "registered" in r.getMessage()]
    assert len(warnings) == 1 and "registered 100 agents within 1 day" in warnings[0]
    assert "AIMUSICSTORE_XFF_TRUSTED_HOPS" in warnings[0]
