"""The graduation rule and the vote weights, on fabricated activity (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.common.config import ReputationSettings
from services.common.vocabulary import STANDINGS
from services.reputation.standing import (
    FLAGGED,
    PROBATION,
    TRUSTED,
    Activity,
    GraduationRule,
    StandingPolicy,
    Weights,
    standing_of,
)

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
RULE = GraduationRule(min_age_days=7, min_votes=20, min_active_days=3, flag_cooldown_days=7)
POLICY = StandingPolicy(probation_weight=0.25, graduation=RULE)
# An agent that meets the rule with nothing to spare.
READY = Activity(
    agent_id="a",
    created_at=NOW - timedelta(days=7),
    votes=20,
    active_days=3,
    flagged=False,
    flag_cleared_at=None,
)


def test_standings_are_the_vocabulary_and_a_flag_wins_over_trust() -> None:
    assert (PROBATION, TRUSTED, FLAGGED) == STANDINGS
    assert standing_of(flagged=False, trusted=False) == PROBATION
    assert standing_of(flagged=False, trusted=True) == TRUSTED
    assert standing_of(flagged=True, trusted=True) == FLAGGED
    assert standing_of(flagged=True, trusted=False) == FLAGGED


@pytest.mark.parametrize(
    ("standing", "reputation", "weights"),
    [
        (TRUSTED, 0, Weights(1.0, 1.0)),
        (TRUSTED, 1000, Weights(1.0, 5.0)),
        (PROBATION, 0, Weights(0.25, 0.25)),
        (PROBATION, 500, Weights(0.25, 0.75)),
        (FLAGGED, 1000, Weights(0.0, 0.0)),
    ],
)
def test_chart_weight_is_the_standing_and_trending_multiplies_in_reputation(
    standing: str, reputation: int, weights: Weights
) -> None:
    assert POLICY.chart_weight(standing) == weights.chart
    assert POLICY.weights(standing, reputation) == weights


def test_the_probation_weight_is_the_configured_one() -> None:
    policy = replace(POLICY, probation_weight=0.1)
    assert policy.weights(PROBATION, 0) == Weights(0.1, 0.1)
    assert policy.chart_weight(TRUSTED) == 1.0


def test_an_agent_meeting_every_condition_graduates() -> None:
    assert RULE.unmet(READY, NOW) == []
    assert RULE.graduates(READY, NOW)


@pytest.mark.parametrize(
    ("change", "unmet"),
    [
        ({"created_at": NOW - timedelta(days=7) + timedelta(seconds=1)}, ["age"]),
        ({"votes": 19}, ["votes"]),
        ({"active_days": 2}, ["active days"]),
        ({"flagged": True}, ["flagged"]),
        ({"flag_cleared_at": NOW - timedelta(days=6, hours=23)}, ["flag cooldown"]),
        ({"created_at": NOW, "votes": 0, "active_days": 0}, ["age", "votes", "active days"]),
    ],
)
def test_each_condition_alone_keeps_an_agent_on_probation(change: dict[str, object], unmet: list[str]) -> None:
    agent = replace(READY, **change)  # type: ignore[arg-type]
    assert RULE.unmet(agent, NOW) == unmet
    assert not RULE.graduates(agent, NOW)


def test_a_flag_cleared_long_enough_ago_no_longer_counts() -> None:
    assert RULE.graduates(replace(READY, flag_cleared_at=NOW - timedelta(days=7)), NOW)
    no_cooldown = replace(RULE, flag_cooldown_days=0)
    assert no_cooldown.graduates(replace(READY, flag_cleared_at=NOW), NOW)


def test_a_ring_registered_and_voting_in_a_for_loop_never_graduates() -> None:
    # 50 agents registered within a minute, each voting on 40 items within
    # five minutes: however long they then wait, all their activity is one day.
    ring = [
        Activity(f"ring-{n}", NOW + timedelta(seconds=n), 40, 1, flagged=False, flag_cleared_at=None) for n in range(50)
    ]
    for later in (timedelta(minutes=10), timedelta(days=7), timedelta(days=365)):
        assert not any(RULE.graduates(agent, NOW + later) for agent in ring)
        assert {tuple(RULE.unmet(agent, NOW + later)) for agent in ring} <= {("age", "active days"), ("active days",)}


def test_the_candidate_filter_never_drops_an_agent_that_would_graduate() -> None:
    candidates = RULE.candidates(NOW)
    samples = [
        replace(READY, created_at=NOW - timedelta(days=days), votes=votes, flag_cleared_at=cleared)
        for days in (0, 6.9, 7, 30)
        for votes in (0, 19, 20, 500)
        for cleared in (None, NOW - timedelta(days=1), NOW - timedelta(days=7), NOW - timedelta(days=40))
    ]
    for agent in samples:
        passes = (
            agent.created_at <= candidates.created_before
            and agent.votes >= candidates.min_votes
            and (agent.flag_cleared_at is None or agent.flag_cleared_at <= candidates.cleared_before)
        )
        if RULE.graduates(agent, NOW):
            assert passes, agent
    assert any(RULE.graduates(agent, NOW) for agent in samples)


def test_the_rule_and_policy_come_from_the_settings() -> None:
    settings = ReputationSettings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "REDIS_URL": "redis://h:6379/0",
            "AIMUSICSTORE_ADMIN_KEY": "k" * 20,
            "AIMUSICSTORE_TRUST_MIN_AGE_DAYS": "2",
            "AIMUSICSTORE_TRUST_MIN_VOTES": "5",
            "AIMUSICSTORE_TRUST_MIN_ACTIVE_DAYS": "1",
            "AIMUSICSTORE_TRUST_FLAG_COOLDOWN_DAYS": "0",
            "AIMUSICSTORE_PROBATION_WEIGHT": "0.5",
        }
    )
    assert StandingPolicy.from_settings(settings) == StandingPolicy(
        0.5, GraduationRule(min_age_days=2, min_votes=5, min_active_days=1, flag_cooldown_days=0)
    )
    defaults = ReputationSettings.from_env(
        {"DATABASE_URL": "postgresql://u@h/db", "REDIS_URL": "redis://h:6379/0", "AIMUSICSTORE_ADMIN_KEY": "k" * 20}
    )
    assert StandingPolicy.from_settings(defaults) == POLICY
