"""Publishing agents' vote weights and announcing the changes, in one place.

The ranking service reads two hashes (services/common/weights.py): the chart
weight (standing) and the trending weight (standing x reputation factor).
When it hears that an agent changed (the auth channel), it re-weighs that
agent's past votes with the weights it reads then; so every change of an
agent's chart weight (a flag, a cleared flag, a graduation) is published
first and announced after. Reputation moving with votes changes only the
trending weight, and is published without an announcement: the new factor
counts for the agent's votes from then on (announcing every voter of every
batch would have the ranking service re-weigh each voter's whole history
once per batch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from services.reputation.ports import ChangeAnnouncer, WeightPublisher
from services.reputation.standing import StandingPolicy, Weights, standing_of
from services.reputation.store.rows import AgentScore


class Weighing:
    def __init__(self, policy: StandingPolicy, publisher: WeightPublisher, announcer: ChangeAnnouncer) -> None:
        self.policy = policy
        self.publisher = publisher
        self.announcer = announcer

    def weights(self, agent: AgentScore) -> Weights:
        return self.policy.weights(
            standing_of(agent.flagged, agent.trusted), agent.reputation_score, agent.registration_crowd
        )

    async def standing_changed(self, agent: AgentScore, *, flag_cleared: bool = False) -> None:
        """Publishes the agent's new weights, then announces it (`flag_cleared`:
        an admin cleared its flag, which the vote service also hears)."""
        weights = self.weights(agent)
        await self.publisher.publish_weights({agent.agent_id: weights.chart}, {agent.agent_id: weights.trending})
        await self.announcer.announce_agent_changed(agent.agent_id, flag_cleared=flag_cleared)

    async def registered(self, agent: AgentScore) -> None:
        """A new agent whose weights are not the default of an agent nobody
        published (the probation weight): published before it can vote, so
        that its first vote counts what it should. No announcement: it has no
        past votes to re-weigh."""
        weights = self.weights(agent)
        await self.publisher.publish_weights({agent.agent_id: weights.chart}, {agent.agent_id: weights.trending})

    async def reputation_moved(self, agents: Iterable[AgentScore]) -> None:
        """Vote events moved these agents' reputation: a new trending weight,
        the same chart weight (votes never change standing), no announcement."""
        trending = {agent.agent_id: self.weights(agent).trending for agent in agents}
        if trending:
            await self.publisher.publish_weights({}, trending)

    async def republish_all(
        self, current: Callable[[], Awaitable[Iterable[AgentScore]]], graduated: Iterable[str]
    ) -> list[str]:
        """The periodic pass: publishes every agent's weights (`current` reads
        them all), and announces the graduates and every agent whose chart
        weight differs from what was published (an announcement lost while
        Redis was away, a write that raced a flag). Returns the agents
        announced, in id order."""
        # What was published is read before the agents: a flag landing in
        # between is then announced once more rather than overwritten unannounced.
        published = await self.publisher.published_chart_weights()
        weights = {agent.agent_id: self.weights(agent) for agent in await current()}
        await self.publisher.publish_weights(
            {agent_id: w.chart for agent_id, w in weights.items()},
            {agent_id: w.trending for agent_id, w in weights.items()},
        )
        changed = set(graduated)
        if published is not None:
            # An agent missing from the hash counts as on probation (services/common/weights.py).
            unpublished = self.policy.probation_weight
            changed |= {agent_id for agent_id, w in weights.items() if published.get(agent_id, unpublished) != w.chart}
        # A flag, clearing or graduation committed after the read above may
        # have published its weights before the write above, which then put
        # the old ones back (and the ranking service's reconciliation would
        # re-weigh the agent's past votes to them). Read again: whatever
        # moved since is published once more, and announced if its chart
        # weight did; a change committed after this read publishes after it.
        again = {agent.agent_id: self.weights(agent) for agent in await current()}
        moved = {agent_id: w for agent_id, w in again.items() if weights.get(agent_id) != w}
        if moved:
            await self.publisher.publish_weights(
                {agent_id: w.chart for agent_id, w in moved.items()},
                {agent_id: w.trending for agent_id, w in moved.items()},
            )
            changed |= {a for a, w in moved.items() if a not in weights or weights[a].chart != w.chart}
        for agent_id in sorted(changed):
            await self.announcer.announce_agent_changed(agent_id)
        return sorted(changed)
