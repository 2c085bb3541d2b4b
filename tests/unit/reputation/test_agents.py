"""The Agents domain class against in-memory stores: registration, keys,
admin changes, flags, the leaderboard's pages, and reputation recomputes.
No server: tests/unit/reputation/fakes.py stands in for PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

import pytest

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import pagination
from services.common.auth import ADMIN, Caller, hash_api_key
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from services.reputation.agents import ADMIN_FLAG_REASON, API_KEY_PREFIX
from services.reputation.tables import TIERS
from tests.unit.reputation.fakes import T0, World, world

_event_ids = itertools.count(1)


def agent_caller(agent_id: str) -> Caller:
    return Caller(agent_id=agent_id)


def votes(*specs: tuple[str, str, str, int], at: datetime = T0) -> list[VoteEvent]:
    """(type, agent, item, direction) each, as vote events on songs."""
    batch = []
    for kind, agent, item, direction in specs:
        event = VoteEvent(
            event_id=next(_event_ids),
            type=kind,
            agent_id=agent,
            item_type="song",
            item_id=item,
            direction=direction,
        )
        event.voted_at.FromDatetime(at)
        batch.append(event)
    return batch


@pytest.fixture
def w() -> World:
    return world()


# register


async def test_register_stores_the_agent_and_a_key_that_verifies(w: World) -> None:
    agent, api_key = await w.agents.register("my-agent", "  My agent  ")
    assert (agent.id, agent.name, agent.tier, agent.reputation_score, agent.flagged) == (
        "my-agent",
        "My agent",
        "free",
        0,
        False,
    )
    assert api_key.startswith(API_KEY_PREFIX) and len(api_key) > 40
    assert w.records.keys == {hash_api_key(api_key): ("my-agent", False)}  # only the hash is stored
    caller = await w.agents.verify_key(api_key)
    assert caller == Caller(agent_id="my-agent", tier="free", flagged=False)


async def test_register_without_an_id_or_name_generates_the_id_and_names_it_so(w: World) -> None:
    agent, first_key = await w.agents.register("", "")
    assert re.fullmatch(r"agent-[0-9a-f]{16}", agent.id)
    assert agent.name == agent.id
    other, second_key = await w.agents.register("", "")
    assert other.id != agent.id and second_key != first_key


@pytest.mark.parametrize("agent_id", ["-starts-with-dash", "has space", "x" * 129, "semi;colon", "née"])
async def test_register_refuses_ids_outside_the_id_rules(w: World, agent_id: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.register(agent_id, "")
    assert refused.value.field == "id"
    assert w.records.agents == {}


@pytest.mark.parametrize("agent_id", ["admin", "Admin", "ROOT", "reputation", "gateway"])
async def test_register_refuses_reserved_ids_in_any_case(w: World, agent_id: str) -> None:
    with pytest.raises(InvalidArgument, match="reserved"):
        await w.agents.register(agent_id, "")
    assert w.records.agents == {}


async def test_register_refuses_a_name_too_long_or_with_nul(w: World) -> None:
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.register("a", "n" * 201)
    assert refused.value.field == "name"
    with pytest.raises(InvalidArgument):
        await w.agents.register("a", "bad\x00name")
    assert w.records.agents == {}


async def test_register_refuses_a_taken_id_and_keeps_the_first_key(w: World) -> None:
    _, api_key = await w.agents.register("dup", "first")
    with pytest.raises(AlreadyExists):
        await w.agents.register("dup", "second")
    assert (await w.agents.get("dup")).name == "first"
    assert await w.agents.verify_key(api_key) is not None


# get, verify_key


async def test_get_validates_the_id_and_reports_an_unknown_agent(w: World) -> None:
    with pytest.raises(InvalidArgument):
        await w.agents.get("not valid")
    with pytest.raises(NotFound):
        await w.agents.get("nobody")


async def test_verify_key_carries_tier_and_flag(w: World) -> None:
    _, api_key = await w.agents.register("a", "")
    await w.agents.update(ADMIN, "a", tier="pro", flagged=True)
    assert await w.agents.verify_key(api_key) == Caller(agent_id="a", tier="pro", flagged=True)


async def test_verify_key_does_not_look_up_what_cannot_be_a_key(w: World) -> None:
    _, api_key = await w.agents.register("a", "")
    lookups = w.records.key_lookups
    assert await w.agents.verify_key("sk_" + api_key[4:]) is None  # not our prefix
    assert await w.agents.verify_key(api_key + "x" * 256) is None  # longer than 256
    assert await w.agents.verify_key("") is None
    assert w.records.key_lookups == lookups
    assert await w.agents.verify_key(API_KEY_PREFIX + "unknown") is None
    assert w.records.key_lookups == lookups + 1


# update


async def test_update_needs_the_admin_even_for_the_agents_own_row(w: World) -> None:
    await w.agents.register("a", "")
    for caller in (agent_caller("a"), agent_caller("b")):
        with pytest.raises(PermissionDenied):
            await w.agents.update(caller, "a", tier="enterprise", flagged=None)
    assert (await w.agents.get("a")).tier == "free"
    assert w.calls == []


@pytest.mark.parametrize("tier", TIERS)
async def test_update_sets_each_tier_and_announces_the_change(w: World, tier: str) -> None:
    await w.agents.register("a", "")
    agent = await w.agents.update(ADMIN, "a", tier=tier, flagged=None)
    assert agent.tier == tier == (await w.agents.get("a")).tier
    assert w.calls == [("agent changed", "a")]  # no flag change: no weight to publish


@pytest.mark.parametrize("tier", ["", "gold", "Free", "PRO "])
async def test_update_refuses_other_tiers(w: World, tier: str) -> None:
    await w.agents.register("a", "")
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.update(ADMIN, "a", tier=tier, flagged=None)
    assert refused.value.field == "tier"
    assert (await w.agents.get("a")).tier == "free"


async def test_update_with_nothing_to_change_answers_with_the_agent(w: World) -> None:
    await w.agents.register("a", "")
    assert (await w.agents.update(ADMIN, "a", tier=None, flagged=None)).id == "a"
    with pytest.raises(NotFound):
        await w.agents.update(ADMIN, "nobody", tier=None, flagged=None)


async def test_admin_flag_weighs_zero_before_it_is_announced(w: World) -> None:
    await w.agents.register("a", "")
    agent = await w.agents.update(ADMIN, "a", tier=None, flagged=True)
    assert (agent.flagged, agent.flag_reason) == (True, ADMIN_FLAG_REASON)
    assert w.calls == [("weights", {"a": 0.0}), ("agent changed", "a")]


async def test_admin_flag_keeps_the_reason_of_a_rule(w: World) -> None:
    await w.agents.register("a", "")
    await w.agents.flag("a", "more than 10 votes within 10 seconds")
    agent = await w.agents.update(ADMIN, "a", tier=None, flagged=True)
    assert agent.flag_reason == "more than 10 votes within 10 seconds"


async def test_clearing_a_flag_recomputes_then_publishes_then_forgives(w: World) -> None:
    await w.agents.register("a", "")
    await w.agents.apply_vote_events(votes(("vote", "a", "x", 1)))
    assert (await w.agents.get("a")).reputation_score == 2
    await w.agents.flag("a", "a rule")
    await w.agents.apply_vote_events(votes(("vote", "a", "y", 1), ("vote", "a", "z", 1)))
    assert (await w.agents.get("a")).reputation_score == 2  # frozen while flagged
    del w.calls[:]

    agent = await w.agents.update(ADMIN, "a", tier=None, flagged=False)

    # Votes cast while flagged never earn, even once cleared.
    assert (agent.flagged, agent.flag_reason, agent.reputation_score) == (False, "", 2)
    assert w.calls == [("weights", {"a": pytest.approx(1.008)}), ("flag cleared", "a")]


async def test_clearing_a_flag_answers_with_the_recomputed_score(w: World) -> None:
    w.records.put("a", score=0, flagged=True)
    await w.projection.apply_events(votes(("vote", "a", "x", 1)), T0)
    w.projection.votes[("a", "song", "x")].earns = True  # cast before the flag
    agent = await w.agents.update(ADMIN, "a", tier=None, flagged=False)
    assert agent.reputation_score == 2 == (await w.agents.get("a")).reputation_score
    assert w.weights.published == {"a": pytest.approx(1.008)}


# rotate_key


async def test_an_agent_rotates_its_own_key(w: World) -> None:
    _, old_key = await w.agents.register("a", "")
    new_key, old_hash = await w.agents.rotate_key(agent_caller("a"), "a")
    assert old_hash == hash_api_key(old_key)
    assert await w.agents.verify_key(old_key) is None
    assert await w.agents.verify_key(new_key) == Caller(agent_id="a")
    assert w.calls == [("key revoked", old_hash)]


async def test_only_the_admin_rotates_another_agents_key(w: World) -> None:
    _, key_a = await w.agents.register("a", "")
    await w.agents.register("b", "")
    with pytest.raises(PermissionDenied):
        await w.agents.rotate_key(agent_caller("b"), "a")
    assert await w.agents.verify_key(key_a) is not None
    new_key, _ = await w.agents.rotate_key(ADMIN, "a")
    assert await w.agents.verify_key(key_a) is None
    assert await w.agents.verify_key(new_key) == Caller(agent_id="a")


async def test_rotating_an_unknown_agent_or_a_bad_id(w: World) -> None:
    with pytest.raises(NotFound):
        await w.agents.rotate_key(ADMIN, "nobody")
    with pytest.raises(InvalidArgument):
        await w.agents.rotate_key(ADMIN, "not valid")
    assert w.calls == []


async def test_rotating_without_a_live_key_revokes_nothing(w: World) -> None:
    w.records.put("a")
    new_key, old_hash = await w.agents.rotate_key(ADMIN, "a")
    assert old_hash is None and w.calls == []
    assert await w.agents.verify_key(new_key) == Caller(agent_id="a")


# flag


async def test_flag_once_weighs_zero_then_announces(w: World) -> None:
    w.records.put("a", score=500)
    assert await w.agents.flag("a", "  more than 50 votes within 300 seconds  ") is True
    agent = await w.agents.get("a")
    assert (agent.flagged, agent.flag_reason) == (True, "more than 50 votes within 300 seconds")
    assert w.calls == [("weights", {"a": 0.0}), ("agent changed", "a")]


async def test_flagging_again_keeps_the_first_reason_and_says_nothing(w: World) -> None:
    w.records.put("a")
    await w.agents.flag("a", "first")
    del w.calls[:]
    assert await w.agents.flag("a", "second") is False
    assert (await w.agents.get("a")).flag_reason == "first"
    assert w.calls == []


@pytest.mark.parametrize(
    ("agent_id", "reason", "field"), [("a", "", "reason"), ("a", "r" * 501, "reason"), ("", "r", "agent_id")]
)
async def test_flag_validates_its_input(w: World, agent_id: str, reason: str, field: str) -> None:
    w.records.put("a")
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.flag(agent_id, reason)
    assert refused.value.field == field
    assert not (await w.agents.get("a")).flagged


# leaderboard


async def test_leaderboard_pages_by_reputation_then_id(w: World) -> None:
    for agent_id, score in [("e", 5), ("b", 9), ("a", 5), ("d", 1), ("c", 9)]:
        w.records.put(agent_id, score=score)
    seen, token, pages = [], "", 0
    while True:
        rows, token = await w.agents.leaderboard(2, token)
        seen += [(row.id, row.reputation_score) for row in rows]
        pages += 1
        if not token:
            break
    assert seen == [("b", 9), ("c", 9), ("a", 5), ("e", 5), ("d", 1)]
    assert pages == 3


async def test_leaderboard_default_page_and_the_last_page_has_no_token(w: World) -> None:
    for n in range(25):
        w.records.put(f"agent-{n:02d}", score=n)
    rows, token = await w.agents.leaderboard(0, "")
    assert len(rows) == pagination.DEFAULT_PAGE_SIZE and token
    rest, last = await w.agents.leaderboard(0, token)
    assert [r.id for r in rest] == [f"agent-{n:02d}" for n in range(4, -1, -1)] and last == ""


@pytest.mark.parametrize(
    "position",
    [
        [2**40, "a"],  # past the INTEGER column
        [-1, "a"],
        ["9", "a"],
        [9, 9],
    ],
)
async def test_leaderboard_refuses_a_forged_position(w: World, position: list[object]) -> None:
    token = pagination.encode_token(position, pagination.list_scope("leaderboard"))
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.leaderboard(2, token)
    assert refused.value.field == "page_token"


async def test_leaderboard_refuses_garbage_and_a_negative_size(w: World) -> None:
    with pytest.raises(InvalidArgument):
        await w.agents.leaderboard(2, "not-a-token")
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.leaderboard(-1, "")
    assert refused.value.field == "page_size"


# vote events and recompute


async def test_vote_events_publish_the_weight_of_every_agent_whose_reputation_moved(w: World) -> None:
    for agent_id in "abc":
        w.records.put(agent_id)
    await w.agents.apply_vote_events(votes(("vote", "a", "x", 1)))
    assert w.weights.published == {"a": pytest.approx(1.008)}  # one vote + one agreement = 2
    # b and c push x negative: a no longer agrees, so a's weight moves too.
    await w.agents.apply_vote_events(votes(("vote", "b", "x", -1), ("vote", "c", "x", -1)))
    assert (await w.agents.get("a")).reputation_score == 1
    assert w.weights.published == {
        "a": pytest.approx(1.004),
        "b": pytest.approx(1.008),
        "c": pytest.approx(1.008),
    }


async def test_vote_events_that_change_no_reputation_publish_nothing(w: World) -> None:
    w.records.put("a")
    batch = votes(("vote", "a", "x", 1))
    await w.agents.apply_vote_events(batch)
    del w.calls[:]
    await w.agents.apply_vote_events(batch)  # redelivered: applied once
    assert w.calls == []


async def test_recompute_all_uses_the_clock_and_republishes_every_weight(w: World) -> None:
    w.records.put("a")
    w.records.put("flagged", score=300, flagged=True)
    await w.agents.apply_vote_events(votes(("vote", "a", "x", 1), ("vote", "a", "y", -1)))
    assert (await w.agents.get("a")).reputation_score == 4
    del w.calls[:]

    w.agents.clock = lambda: T0 + timedelta(days=35, hours=23)
    assert await w.agents.recompute_all() == 1  # a: + int(0.1 * 35)
    assert (await w.agents.get("a")).reputation_score == 7
    assert (await w.agents.get("flagged")).reputation_score == 300  # frozen while flagged
    assert w.calls == [("weights", {"a": pytest.approx(1.028), "flagged": 0.0})]
    assert await w.agents.recompute_all() == 0  # nothing moved, yet every weight is republished
    assert len(w.calls) == 2
