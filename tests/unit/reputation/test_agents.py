"""The Agents domain class against in-memory stores: registration, keys,
admin changes, flags, the leaderboard's pages, and reputation recomputes.
No server: tests/unit/reputation/fakes.py stands in for PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from aimusicstore.vote.v1.vote_event_pb2 import VoteEvent
from services.common import pagination
from services.common.auth import ADMIN, Caller, hash_api_key
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from services.reputation.agents import ADMIN_FLAG_REASON, API_KEY_PREFIX
from services.reputation.store.rows import AgentScore
from services.reputation.tables import TIERS
from tests.unit.reputation.fakes import POLICY, RULE, T0, World, world

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
    assert w.calls == [("chart", {"a": 0.0}), ("trending", {"a": 0.0}), ("agent changed", "a")]


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

    # Votes cast while flagged never earn, even once cleared; a new agent is back on probation.
    assert (agent.flagged, agent.flag_reason, agent.reputation_score) == (False, "", 2)
    assert w.agents.standing(agent) == ("probation", 0.25)
    assert w.calls == [
        ("chart", {"a": 0.25}),
        ("trending", {"a": pytest.approx(0.25 * 1.008)}),
        ("flag cleared", "a"),
    ]


async def test_clearing_a_flag_answers_with_the_recomputed_score(w: World) -> None:
    w.records.put("a", score=0, flagged=True)
    await w.projection.apply_events(votes(("vote", "a", "x", 1)), T0)
    w.projection.votes[("a", "song", "x")].earns = True  # cast before the flag
    agent = await w.agents.update(ADMIN, "a", tier=None, flagged=False)
    assert agent.reputation_score == 2 == (await w.agents.get("a")).reputation_score
    assert w.weights.trending == {"a": pytest.approx(0.25 * 1.008)}


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
    assert w.calls == [("chart", {"a": 0.0}), ("trending", {"a": 0.0}), ("agent changed", "a")]


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


async def test_vote_events_publish_the_trending_weight_of_every_agent_whose_reputation_moved(w: World) -> None:
    for agent_id in "abc":
        w.records.put(agent_id)
    w.records.put("t", trusted=True)
    await w.agents.apply_vote_events(votes(("vote", "a", "x", 1)))
    # one vote + one agreement = 2; on probation: 0.25 x the reputation factor
    assert w.weights.trending == {"a": pytest.approx(0.25 * 1.008)}
    # b and c push x negative: a no longer agrees, so a's weight moves too.
    await w.agents.apply_vote_events(votes(("vote", "b", "x", -1), ("vote", "c", "x", -1), ("vote", "t", "y", 1)))
    assert (await w.agents.get("a")).reputation_score == 1
    assert w.weights.trending == {
        "a": pytest.approx(0.25 * 1.004),
        "b": pytest.approx(0.25 * 1.008),
        "c": pytest.approx(0.25 * 1.008),
        "t": pytest.approx(1.008),  # trusted: the reputation factor alone
    }
    # Votes never change standing: no chart weight, nothing announced.
    assert w.weights.chart == {} and [c for c in w.calls if c[0] != "trending"] == []


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
    assert w.calls == [
        ("chart", {"a": 0.25, "flagged": 0.0}),
        ("trending", {"a": pytest.approx(0.25 * 1.028), "flagged": 0.0}),
    ]
    assert await w.agents.recompute_all() == 0  # nothing moved, yet every weight is republished
    assert [c[0] for c in w.calls] == ["chart", "trending"] * 2  # and nothing changed to announce


async def test_a_flag_landing_while_the_pass_republishes_is_not_overwritten(w: World) -> None:
    """The pass reads every agent, then writes their weights. A flag that
    commits after the read and publishes before the write would have its 0
    put back to the old weight, unannounced: the pass reads again, and
    publishes and announces what moved."""
    w.records.put("a")
    w.records.put("b")
    real = w.records.all_scores
    reads = 0

    async def flag_lands_after_the_first_read() -> list[AgentScore]:
        nonlocal reads
        reads += 1
        scores = await real()
        if reads == 1:
            await w.agents.flag("a", "a rule")  # commits, publishes 0, announces
        return scores

    w.records.all_scores = flag_lands_after_the_first_read  # type: ignore[method-assign]
    del w.calls[:]
    await w.agents.recompute_all()
    assert reads == 2
    assert w.weights.chart == {"a": 0.0, "b": 0.25} and w.weights.trending["a"] == 0.0
    # Its own announcement, then the pass's after it put the 0 back.
    assert [c for c in w.calls if c == ("agent changed", "a")] == [("agent changed", "a")] * 2
    assert ("agent changed", "b") not in w.calls


# standing and weights


def no_cooldown() -> World:
    return world(policy=replace(POLICY, graduation=replace(RULE, flag_cooldown_days=0)))


async def vote_on_days(w: World, agent_id: str, days: dict[int, str]) -> None:
    """Votes of the agent on each day (days after T0) on each item named."""
    for day, items in days.items():
        await w.agents.apply_vote_events(votes(*[("vote", agent_id, i, 1) for i in items], at=T0 + timedelta(days=day)))


async def test_a_new_agent_is_on_probation_with_the_probation_weight(w: World) -> None:
    agent, _ = await w.agents.register("a", "")
    assert w.agents.standing(agent) == ("probation", 0.25)


async def test_the_pass_trusts_an_aged_agent_active_on_enough_days_and_announces_it_once(w: World) -> None:
    await w.agents.register("a", "")
    await vote_on_days(w, "a", {0: "pq", 1: "r", 3: "s"})
    w.later(days=6, hours=23)  # active enough, not old enough
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("probation", 0.25)
    assert ("agent changed", "a") not in w.calls

    w.later(hours=1)
    del w.calls[:]
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("trusted", 1.0)
    # Published first, then announced: the ranking service re-weighs on the announcement.
    assert [c[0] for c in w.calls] == ["chart", "trending", "agent changed"]
    assert w.weights.chart["a"] == 1.0 and w.weights.trending["a"] > 1.0
    assert w.calls[-1] == ("agent changed", "a")

    del w.calls[:]
    await w.agents.recompute_all()
    assert "agent changed" not in [c[0] for c in w.calls]


@pytest.mark.parametrize(
    "days",
    [
        {0: "pqrs"},  # a burst: one day, however old the account
        {0: "p", 1: "q", 3: "r"},  # too few votes
    ],
)
async def test_the_pass_leaves_on_probation_an_agent_without_enough_activity(w: World, days: dict[int, str]) -> None:
    await w.agents.register("a", "")
    await vote_on_days(w, "a", days)
    w.later(days=60)
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("probation", 0.25)


async def test_votes_cast_while_flagged_never_count_toward_trust() -> None:
    w = no_cooldown()
    await w.agents.register("a", "")
    await vote_on_days(w, "a", {0: "p", 1: "q"})
    await w.agents.flag("a", "a rule")
    await vote_on_days(w, "a", {2: "r", 3: "s"})
    w.later(days=30)
    await w.agents.update(ADMIN, "a", tier=None, flagged=False)
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("probation", 0.25)


async def test_a_flag_ends_trust_and_weighs_zero_in_both_hashes(w: World) -> None:
    w.records.put("t", trusted=True)
    await w.agents.apply_vote_events(votes(("vote", "t", "x", 1)))
    await w.agents.recompute_all()
    assert (w.weights.chart["t"], w.weights.trending["t"]) == (1.0, pytest.approx(1.008))
    del w.calls[:]

    assert await w.agents.flag("t", "coordinated voting: group g-1")
    agent = await w.agents.get("t")
    assert w.agents.standing(agent) == ("flagged", 0.0) and agent.trusted_at is None
    assert w.calls == [("chart", {"t": 0.0}), ("trending", {"t": 0.0}), ("agent changed", "t")]


async def test_clearing_a_flag_puts_the_agent_on_probation_until_the_cooldown_ends(w: World) -> None:
    await w.agents.register("a", "")
    await vote_on_days(w, "a", {0: "pq", 1: "r", 3: "s"})
    w.later(days=10)
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("trusted", 1.0)
    await w.agents.update(ADMIN, "a", tier=None, flagged=True)
    del w.calls[:]

    cleared = await w.agents.update(ADMIN, "a", tier=None, flagged=False)
    assert w.agents.standing(cleared) == ("probation", 0.25)
    assert [c[0] for c in w.calls] == ["chart", "trending", "flag cleared"] and w.weights.chart["a"] == 0.25

    w.later(days=6)
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("probation", 0.25)
    w.later(days=1)
    del w.calls[:]
    await w.agents.recompute_all()
    assert w.agents.standing(await w.agents.get("a")) == ("trusted", 1.0)
    assert w.calls[-1] == ("agent changed", "a")


async def test_without_a_cooldown_clearing_a_flag_restores_trust_at_once() -> None:
    w = no_cooldown()
    await w.agents.register("a", "")
    await vote_on_days(w, "a", {0: "pq", 1: "r", 3: "s"})
    w.later(days=10)
    await w.agents.flag("a", "a rule")
    del w.calls[:]
    cleared = await w.agents.update(ADMIN, "a", tier=None, flagged=False)
    assert w.agents.standing(cleared) == ("trusted", 1.0)
    assert w.calls[0] == ("chart", {"a": 1.0}) and w.calls[-1] == ("flag cleared", "a")


async def test_the_pass_announces_an_agent_whose_published_chart_weight_is_stale(w: World) -> None:
    w.records.put("f", flagged=True)
    w.records.put("p")
    w.weights.chart.update({"f": 1.0, "p": 0.25})  # the flag's announcement was lost, say
    await w.agents.recompute_all()
    assert w.weights.chart == {"f": 0.0, "p": 0.25}
    assert [c for c in w.calls if c[0] == "agent changed"] == [("agent changed", "f")]


async def test_the_pass_announces_nothing_but_graduates_when_nothing_was_published(w: World) -> None:
    # After a Redis flush the hash is gone: what ranking holds is unknown, so
    # the pass does not announce every trusted and flagged agent at once.
    w.records.put("f", flagged=True)
    w.records.put("t", trusted=True)
    await w.agents.recompute_all()
    assert w.weights.chart == {"f": 0.0, "t": 1.0}
    assert [c for c in w.calls if c[0] == "agent changed"] == []


# list_agents


@pytest.mark.parametrize("flagged", [True, False, None])
async def test_listing_agents_is_for_the_admin_only(w: World, flagged: bool | None) -> None:
    w.records.put("a", flagged=True)
    with pytest.raises(PermissionDenied):
        await w.agents.list_agents(agent_caller("a"), flagged, 10, "")


async def walk(w: World, flagged: bool | None, page_size: int) -> list[str]:
    seen, token = [], ""
    while True:
        rows, token = await w.agents.list_agents(ADMIN, flagged, page_size, token)
        seen += [row.id for row in rows]
        if not token:
            return seen


async def test_agents_are_listed_newest_first_in_pages(w: World) -> None:
    for agent_id, hours in (("old", 0), ("mid-b", 2), ("mid-a", 2), ("new", 3), ("flagged", 1)):
        w.records.put(agent_id, created_at=T0 + timedelta(hours=hours), flagged=agent_id == "flagged")
    assert await walk(w, None, 2) == ["new", "mid-a", "mid-b", "flagged", "old"]
    assert await walk(w, False, 1) == ["new", "mid-a", "mid-b", "old"]


async def test_the_moderation_queue_lists_flagged_agents_newest_flag_first_with_reasons(w: World) -> None:
    for agent_id in ("a", "b", "c", "clean"):
        w.records.put(agent_id, created_at=T0 - timedelta(days=1))
    for agent_id, hours in (("b", 1), ("a", 2), ("c", 3)):
        w.later(hours=hours)
        await w.agents.flag(agent_id, f"coordinated voting: group {agent_id}")
    rows, token = await w.agents.list_agents(ADMIN, True, 2, "")
    assert [(r.id, r.flag_reason) for r in rows] == [
        ("c", "coordinated voting: group c"),
        ("a", "coordinated voting: group a"),
    ]
    rest, last = await w.agents.list_agents(ADMIN, True, 2, token)
    assert [r.id for r in rest] == ["b"] and last == ""
    # A token is for the list it came from.
    with pytest.raises(InvalidArgument) as other_list:
        await w.agents.list_agents(ADMIN, None, 2, token)
    assert other_list.value.field == "page_token"


@pytest.mark.parametrize(
    "position",
    [
        ["not a time", "a"],
        ["0001-01-01T00:00:00+00:00", "a"],
        ["2026-03-01T12:00:00", "a"],  # no offset
        ["2026-03-01T12:00:00+00:00", 7],
        [5, "a"],
    ],
)
async def test_the_agent_list_refuses_a_forged_position(w: World, position: list[object]) -> None:
    token = pagination.encode_token(position, pagination.list_scope("agents", flagged=True))
    with pytest.raises(InvalidArgument) as refused:
        await w.agents.list_agents(ADMIN, True, 2, token)
    assert refused.value.field == "page_token"
