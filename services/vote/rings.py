"""Coordinated-voting detection, as plain Python with no I/O: groups of
agents voting the same items, in the same direction, closer in time than
independent agents do (docs/integrity.md, "Coordinated voting"). The job in
ring_watch.py reads the recent votes, calls find_rings() every pass, and
flags every member of the rings returned.

The shape follows CopyCatch (Beutel et al., WWW 2013: a group of users and a
set of items they all acted on within a short window) and SynchroTrap (Cao
et al., CCS 2014: users whose timestamped actions match within a time
window, clustered by how much they share). Honest agents co-vote popular
songs all the time, so the question is always "more than chance would
give, and by how much", answered against the votes around:

1. Bursts. For every action (an item and a direction) with votes in the
   window judged, the stretch of at most `window_s` seconds where its votes
   are least likely, trimmed of stray votes at its ends. Chance: given the
   action's votes from the item's first recent vote to `after_s` past the
   stretch (plus a prior of `prior_votes` votes, `prior_share` of them the
   action's, for items with little history), each falls in the stretch
   with the stretch's share of all votes then. Only the votes of agents
   who could still vote the item count: a song most agents vote early in
   their sessions then draws few votes, and that is no burst. A burst
   needs `min_size` agents and `min_lift` times the action's share of the
   votes around it (a popular song's surge is neither).
2. Quiet. For a burst the timing alone does not decide: how many of its
   new agents voted again (from `settle_s` to `after_s` past it), against
   the other new agents voting at its time. Honest agents go on, or end
   their sessions, like those others; a ring's agents stop together.
3. Groups. Bursts sharing a third of the smaller one's agents are one
   group; a group is a ring when its least likely burst's chance is below
   `max_chance`. Large counts weigh as `evidence_votes` votes would:
   honest votes are not independent (sessions, agents following the
   charts), and a thousand of them must not make a mild surge "proof".
4. Members. An agent of the group's core (its least likely burst, or half
   its bursts and at least two) is flagged only when the group's own
   actions (voted by a quarter of the group, which cast most of their
   recent votes) are at least `member_share` of its recent votes. Votes on
   crowded actions (at least `crowd_voters`, and `crowd_share` of the other
   agents, voted them outside the group: the popular songs rings hide
   camouflage on, or age their agents with) do not count either way; a
   burst against its item's prevailing direction (a brigade on the #1) is
   the group's own however crowded. A ring needs `min_size` such members.

A window is judged once `settle_s` seconds have passed after it, while it
ended at most `judge_s` seconds before that: each pass looks at a bounded
stretch. An agent with no other recent votes (a new one piling onto a fresh
item) is judged wholly by its part in the burst. Not seen here:
registrations (the reputation service's), and who submitted an item (the
catalog's).
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

# An action: what a vote did, (item_type, item_id, direction).
Action = tuple[str, str, int]
# Bursts searched per action and pass: a few rings on one item are found,
# a long, busy item costs a bounded amount of work.
BURSTS_PER_ACTION = 3
LN10 = math.log(10)
# A vote at either end of a burst is dropped when the burst is then at least
# ten times less likely.
TRIM_GAIN = 1.0
# Votes sampled to measure how many of the agents voting at a burst's time vote again.
QUIET_SAMPLE = 500
# Agents with at most this many votes in their session by a burst's end are
# "new" for the quiet test: just arrived, or back after `session_gap_s`.
QUIET_NEW_VOTES = 5
# Fewer new agents than this voting other things at a burst's time (a quiet
# hour, or the burst is all the traffic there is) are no measure of how often
# new agents go on voting: the whole lookback's new agents are, instead.
QUIET_MIN_OTHERS = 20
# However busy the others, an agent is expected to vote again with at most
# this chance: a handful of honest agents ending their sessions together is
# no proof.
QUIET_MAX_SHARE = 0.8
# Bursts sharing a third of the smaller one's agents are one group: a ring's
# camouflage votes make the popular songs they land on look bursty too, with
# honest voters in the burst; grouped with the ring's own, those honest
# voters are not in its core (see _members).
GROUP_OVERLAP = 3
# Bursts less surprising than this (1%) are not grouped at all: they only
# add noise to the groups that real rings form.
CANDIDATE_LOG10_CHANCE = -2.0


class RecentVote(NamedTuple):
    """A recent vote as the detection reads it (cheap to build by the ten thousand)."""

    agent_id: str
    item_type: str
    item_id: str
    direction: int  # +1 / -1
    at: float  # seconds since the epoch


@dataclass(frozen=True)
class RingRules:
    """The detection's thresholds (VoteSettings ring_*; docs/integrity.md)."""

    window_s: float = 300.0
    settle_s: float = 30.0
    judge_s: float = 300.0
    after_s: float = 90.0
    min_size: int = 5
    min_lift: float = 2.5
    max_chance: float = 1e-16
    evidence_votes: float = 50.0
    prior_share: float = 0.1
    prior_votes: float = 20.0
    member_share: float = 0.5
    crowd_voters: int = 10
    crowd_share: float = 0.1
    # A lockstep group acts on a few items (its targets, and the popular
    # songs its camouflage made bursty). A "group" spanning more is the
    # honest population moving through a fresh catalogue together: measured,
    # 300 agents voting 24 of 200 fresh songs each, 20 s apart in random
    # order, made one group of 39 agents on 82 items.
    max_items: int = 12
    # An agent's votes with no gap longer than this are one session: an agent
    # back after a longer silence (a sleeper woken to strike) is new again.
    session_gap_s: float = 300.0

    @classmethod
    def from_settings(cls, settings: Any) -> RingRules:
        return cls(
            window_s=float(settings.ring_window_s),
            settle_s=float(settings.ring_settle_s),
            judge_s=float(settings.ring_judge_s),
            after_s=float(settings.ring_after_s),
            min_size=int(settings.ring_min_size),
            min_lift=float(settings.ring_min_lift),
            max_chance=float(settings.ring_max_chance),
            evidence_votes=float(settings.ring_evidence_votes),
            prior_share=float(settings.ring_prior_share),
            prior_votes=float(settings.ring_prior_votes),
            member_share=float(settings.ring_member_share),
            crowd_voters=int(settings.ring_crowd_voters),
            crowd_share=float(settings.ring_crowd_share),
            max_items=int(settings.ring_max_items),
            session_gap_s=float(settings.ring_session_gap_s),
        )


@dataclass(frozen=True)
class Burst:
    action: Action
    agents: frozenset[str]
    start: float
    end: float
    lift: float  # the action's share of the votes in the burst over its share around it
    log10_chance: float
    # The agents of its densest stretch, when the burst is that stretch
    # widened (see _BurstSearch.burst); else its agents.
    densest: frozenset[str] = frozenset()

    @property
    def tight(self) -> frozenset[str]:
        return self.densest or self.agents


@dataclass(frozen=True)
class Ring:
    group_id: str
    members: tuple[str, ...]  # sorted
    items: int
    start: float
    end: float
    log10_chance: float

    @property
    def reason(self) -> str:
        items = f"{self.items} item" + ("" if self.items == 1 else "s")
        span = max(1, round(self.end - self.start))
        return f"coordinated voting: group {self.group_id} of {len(self.members)} agents on {items} within {span} s"


def group_id(members: Iterable[str]) -> str:
    """Stable for the same members, whatever their order."""
    return hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:6]


def _kl(p: float, q: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(p) from Bernoulli(q), 0 < q < 1."""
    out = 0.0
    if p > 0:
        out += p * math.log(p / q)
    if p < 1:
        out += (1 - p) * math.log((1 - p) / (1 - q))
    return out


def log10_binomial_tail(k: float, n: float, p: float, *, upper: bool = True, at_most: float = math.inf) -> float:
    """log10 of the Chernoff bound of P(X >= k) (or P(X <= k) when not
    `upper`), X ~ Binomial(n, p): exp(-n KL(k/n || p)). An upper bound of
    the chance, so never more suspicious than the exact tail; 0 when k is
    on the expected side of n p. Beyond `at_most` trials, the same
    proportions weigh as `at_most` trials would."""
    if n <= 0 or not 0 < p < 1 or (k <= n * p if upper else k >= n * p):
        return 0.0
    return -min(n, at_most) * _kl(min(1.0, k / n), p) / LN10


class _Traffic:
    """The recent votes indexed for counting: all of them by time, each
    action's and each agent's by time, each item's first vote."""

    def __init__(self, votes: Iterable[RecentVote], session_gap_s: float) -> None:
        by_action: dict[Action, list[tuple[float, str]]] = defaultdict(list)
        by_agent: dict[str, list[float]] = defaultdict(list)
        first: dict[tuple[str, str], float] = {}
        timeline = []
        for vote in votes:
            by_action[(vote.item_type, vote.item_id, vote.direction)].append((vote.at, vote.agent_id))
            by_agent[vote.agent_id].append(vote.at)
            item = (vote.item_type, vote.item_id)
            if vote.at < first.get(item, math.inf):
                first[item] = vote.at
            timeline.append((vote.at, vote.agent_id))
        timeline.sort()
        self.times = [t for t, _ in timeline]
        self.voters = [a for _, a in timeline]
        self.first = first
        self.actions: dict[Action, tuple[list[float], list[str]]] = {}
        self.item_voters: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        for action, found in by_action.items():
            found.sort()
            self.actions[action] = ([t for t, _ in found], [a for _, a in found])
            self.item_voters[action[:2]] += found
        for found in self.item_voters.values():
            found.sort()
        # Per agent, the index of the first vote of the session each vote is in.
        self.session_start: dict[str, list[int]] = {}
        for agent, times in by_agent.items():
            times.sort()
            starts, first_of = [], 0
            for n, at in enumerate(times):
                if n and at - times[n - 1] > session_gap_s:
                    first_of = n
                starts.append(first_of)
            self.session_start[agent] = starts
        self.by_agent = by_agent

    def between(self, start: float, end: float) -> int:
        """Votes cast in [start, end]."""
        return bisect_right(self.times, end) - bisect_left(self.times, start)

    def spent_between(self, item: tuple[str, str], start: float, end: float) -> int:
        """Votes cast in [start, end] by agents who had voted the item
        before: one vote per agent and item, they could not vote it then."""
        spent = 0
        for at, agent in self.item_voters[item]:
            if at >= end:
                break
            times = self.by_agent[agent]
            lo = bisect_right(times, at) if at >= start else bisect_left(times, start)
            spent += bisect_right(times, end) - lo
        return spent

    def sample_between(self, start: float, end: float, at_most: int) -> list[str]:
        """The agents of the votes cast in [start, end], once per vote (an
        even sample of about `at_most` of the votes when there were more)."""
        lo, hi = bisect_left(self.times, start), bisect_right(self.times, end)
        return self.voters[lo : hi : max(1, (hi - lo) // at_most)]

    def session_votes(self, agent: str, until: float) -> int:
        """The agent's votes by `until` in its session then (since its last
        silence of more than `session_gap_s`)."""
        n = bisect_right(self.by_agent[agent], until)
        return 0 if n == 0 else n - self.session_start[agent][n - 1]

    def voted_in(self, agent: str, after: float, until: float) -> bool:
        """Whether the agent voted in (after, until]."""
        times = self.by_agent[agent]
        n = bisect_right(times, after)
        return n < len(times) and times[n] <= until


class _BurstSearch:
    """The least likely windows of one action's votes."""

    def __init__(self, traffic: _Traffic, action: Action, rules: RingRules, now: float) -> None:
        self.now = now
        self.traffic = traffic
        self.action = action
        self.rules = rules
        self.times, self.agents = traffic.actions[action]
        self.first = traffic.first[action[:2]]
        self.last_end = now - rules.settle_s  # judged once settled...
        self.first_end = self.last_end - rules.judge_s  # ...for a while

    def timing(self, i: int, j: int, *, open_only: bool = False) -> tuple[float, float]:
        """Votes i..j (inclusive) of the action against its votes around
        them: (lift, log10 chance).

        Around is from the item's first recent vote to `after_s` past the
        window, plus the prior: `prior_votes` more votes, `prior_share` of
        them the action's. Each of the action's votes then falls in the
        window with the window's share of all those votes, independently.
        The lift is the action's share of the votes in the window over its
        share of those around it.

        `open_only` counts only the votes of agents who could still vote
        the item (had not yet): a song most agents voted early in their
        sessions draws few votes after, and that is no burst. Costlier: it
        checks the window chosen, not every window."""
        rules, times = self.rules, self.times
        start, end = times[i], times[j]
        context_end = min(self.now, end + rules.after_s)
        in_window = self.traffic.between(start, end)
        context = self.traffic.between(self.first, context_end) + rules.prior_votes
        if open_only:
            in_window -= self.traffic.spent_between(self.action[:2], start, end)
            context -= self.traffic.spent_between(self.action[:2], self.first, context_end)
        k = j - i + 1
        # Every vote of the action is at or after the item's first.
        around = bisect_right(times, context_end) - k + rules.prior_votes * rules.prior_share
        lift = (k / in_window) / (around / (context - in_window))
        return lift, log10_binomial_tail(k, k + around, in_window / context, at_most=rules.evidence_votes)

    def best(self, lo: int, hi: int) -> tuple[int, int] | None:
        """The least likely window within votes lo..hi-1."""
        rules, times = self.rules, self.times
        found, lowest = None, 0.0
        j = lo
        for i in range(lo, hi):
            j = max(j, i)
            while j + 1 < hi and times[j + 1] - times[i] <= rules.window_s and times[j + 1] <= self.last_end:
                j += 1
            if times[j] > self.last_end or times[j] < self.first_end or j - i + 1 < rules.min_size:
                continue
            chance = self.timing(i, j)[1]
            if chance < lowest:
                found, lowest = (i, j), chance
        return None if found is None else self._trimmed(*found, lowest)

    def _trimmed(self, i: int, j: int, chance: float) -> tuple[int, int]:
        """Drops votes at either end while that makes the window much less
        likely (TRIM_GAIN): honest votes on the action some time before or
        after a ring's, not the ring's own first and last."""
        while j - i + 1 > self.rules.min_size:
            left, right = self.timing(i + 1, j)[1], self.timing(i, j - 1)[1]
            if left < chance - TRIM_GAIN and left <= right:
                i, chance = i + 1, left
            elif right < chance - TRIM_GAIN:
                j, chance = j - 1, right
            else:
                break
        return i, j

    def quiet(self, agents: frozenset[str], start: float, end: float) -> float:
        """log10 chance that so few of the burst's agents voted again (from
        `settle_s` to `after_s` past it: a ring's camouflage votes trail its
        burst) when the other agents voting at its time did so as often as
        they did. Honest agents go on voting, or end their sessions, like
        the others; a ring's agents stop together.

        Only agents with few recent votes by the burst's end are compared
        (new ones, as a ring's usually are): an agent deep into its session
        is about to end it, and which songs it votes late in a session is no
        accident (the popular ones come first), so comparing those would
        make the voters of some songs look quiet. The others are weighed by
        their votes then (a sample of those votes): the more an agent votes,
        the likelier it votes any given song."""
        rules, traffic = self.rules, self.traffic
        since, until = end + rules.settle_s, min(self.now, end + rules.after_s)
        if until - since < rules.settle_s:
            return 0.0  # too short to tell

        def new(agent: str) -> bool:
            return traffic.session_votes(agent, end) <= QUIET_NEW_VOTES

        members = [agent for agent in agents if new(agent)]
        if len(members) < rules.min_size:
            return 0.0
        # Not those who voted the action at any time: the agents yet to vote
        # a popular song (who will, so vote on) would make its voters look
        # quiet.
        chose = set(self.agents)
        others = [a for a in traffic.sample_between(start, end, QUIET_SAMPLE) if a not in chose and new(a)]
        if len(others) >= QUIET_MIN_OTHERS:
            went_on, compared = sum(1 for agent in others if traffic.voted_in(agent, since, until)), len(others)
        else:
            went_on, compared = self._went_on_before(chose, since - end, until - end)
        share = min((went_on + 1) / (compared + 2), QUIET_MAX_SHARE)
        again = sum(1 for agent in members if traffic.voted_in(agent, since, until))
        if again * rules.min_lift > share * len(members):
            return 0.0  # a difference of degree only
        return log10_binomial_tail(again, len(members), share, upper=False, at_most=rules.evidence_votes)

    def _went_on_before(self, chose: set[str], settle: float, after: float) -> tuple[int, int]:
        """Of a sample of the lookback's votes cast by new agents (long
        enough ago to tell), how many were followed by another vote of
        theirs as a burst's agents' would be; and how many were sampled.
        The measure when few agents vote at a burst's time: in a quiet
        hour, a ring's own traffic is all there is."""
        traffic, went_on, sampled = self.traffic, 0, 0
        step = max(1, len(traffic.times) // QUIET_SAMPLE)
        for n in range(0, bisect_right(traffic.times, self.now - after), step):
            agent, at = traffic.voters[n], traffic.times[n]
            if agent in chose or traffic.session_votes(agent, at) > QUIET_NEW_VOTES:
                continue
            sampled += 1
            went_on += traffic.voted_in(agent, at + settle, at + after)
        return went_on, sampled

    def burst(self, i: int, j: int) -> tuple[Burst, int, int]:
        """Votes i..j judged, and the widest window around them too (all
        its agents stopping together may say
        more than the timing of the densest stretch: in a quiet hour a
        ring's own votes are all the traffic, and its densest stretch is
        any part of it). The less likely of the two, and its first and last
        vote."""
        found = self._judged(i, j)
        if (wide := self._widened(i, j)) != (i, j):
            wider = self._judged(*wide)
            if wider.log10_chance < found.log10_chance:
                return replace(wider, densest=found.agents), *wide
        return found, i, j

    def _judged(self, i: int, j: int) -> Burst:
        """Votes i..j as a burst."""
        lift, timing = self.timing(i, j, open_only=True)
        agents = frozenset(self.agents[i : j + 1])
        start, end = self.times[i], self.times[j]
        # The action drew votes around the burst about as much as in it: a
        # popular song, whose voters and timing prove nothing. Unless the
        # burst is all the item's recent history, settled, and nothing more
        # came after: its share of the votes around is then only the prior
        # (a fresh song takes a tenth), which a ring voting it among as many
        # camouflage votes, while nobody else votes, does not exceed.
        whole = i == 0 and j == len(self.times) - 1 and self.first >= start and self.now - end >= self.rules.after_s
        if lift < (1.0 if whole else self.rules.min_lift):
            return Burst(self.action, agents, start, end, lift, 0.0)
        enough = math.log10(self.rules.max_chance)
        most = min(len(agents), self.rules.evidence_votes) * math.log10(1 - QUIET_MAX_SHARE)
        if enough < timing <= enough - most:  # the timing alone does not decide, with the quiet it might
            timing += self.quiet(agents, start, end)
        return Burst(self.action, agents, start, end, lift, timing)

    def _widened(self, i: int, j: int) -> tuple[int, int]:
        """Votes i..j grown one vote at a time, the nearer side first, while
        they span at most `window_s` and are settled."""
        times, rules = self.times, self.rules
        while True:
            left = times[i - 1] if i > 0 and times[j] - times[i - 1] <= rules.window_s else None
            right = None
            if j + 1 < len(times) and times[j + 1] <= self.last_end and times[j + 1] - times[i] <= rules.window_s:
                right = times[j + 1]
            if left is None and right is None:
                return i, j
            if right is None or (left is not None and times[i] - left <= right - times[j]):
                i -= 1
            else:
                j += 1

    def bursts(self) -> list[Burst]:
        found: list[Burst] = []
        spans = [(0, len(self.times))]
        while spans and len(found) < BURSTS_PER_ACTION:
            lo, hi = spans.pop()
            if hi - lo < self.rules.min_size or (best := self.best(lo, hi)) is None:
                continue
            burst, i, j = self.burst(*best)
            found.append(burst)
            spans += [(lo, i), (j + 1, hi)]
        return found


def _find_bursts(traffic: _Traffic, rules: RingRules, now: float) -> list[Burst]:
    bursts = []
    for action, (times, _) in traffic.actions.items():
        if len(times) >= rules.min_size and times[-1] >= now - rules.settle_s - rules.judge_s:
            bursts += _BurstSearch(traffic, action, rules, now).bursts()
    return bursts


def _groups(bursts: Sequence[Burst]) -> list[list[Burst]]:
    """Bursts sharing a third of the smaller's agents, transitively."""
    parent = list(range(len(bursts)))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_agent: dict[str, list[int]] = defaultdict(list)
    for n, burst in enumerate(bursts):
        for agent in burst.agents:
            by_agent[agent].append(n)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for indices in by_agent.values():
        for a in range(len(indices)):
            for b in range(a + 1, len(indices)):
                shared[(indices[a], indices[b])] += 1
    for (a, b), count in shared.items():
        if count * GROUP_OVERLAP >= min(len(bursts[a].agents), len(bursts[b].agents)):
            parent[root(a)] = root(b)
    groups: dict[int, list[Burst]] = defaultdict(list)
    for n, burst in enumerate(bursts):
        groups[root(n)].append(burst)
    return list(groups.values())


def _against(burst: Burst, voters: dict[Action, int]) -> bool:
    """Whether the item's other recent votes mostly went the other way."""
    item_type, item_id, direction = burst.action
    return voters.get((item_type, item_id, -direction), 0) > voters[burst.action] - len(burst.agents)


def _struck_and_left(burst: Burst, whole: bool, traffic: _Traffic, now: float, rules: RingRules) -> set[str]:
    """The agents who voted the group's own action in its least likely
    burst on one, a few votes into their session (QUIET_NEW_VOTES), and
    have not voted since the burst, once `after_s` has passed.

    A sleeper (aged with honest-looking votes, woken to strike, gone again)
    has mostly honest votes: the strike and the silence after give it away.
    An honest agent that happens to vote the ring's item in that stretch
    goes on with its session (or ends it then, and is flagged with the
    ring: docs/integrity.md, "Limits"). An agent deep into a session is
    left to the member share: a population whose sessions all end at once
    (a benchmark's, or a script's) is not a ring of sleepers, however its
    last minutes look.

    The whole burst when most of the action's voters are the group's and
    it goes with its item's other votes (a ring's own song); else only its
    densest stretch (a brigade on the honest #1: widened, it takes in the
    honest voters of the same direction minutes either side, some of whom
    end their sessions then)."""
    if now - burst.end < rules.after_s:
        return set()
    agents = burst.agents if whole else burst.tight
    return {
        agent
        for agent in agents
        if traffic.session_votes(agent, burst.end) <= QUIET_NEW_VOTES and not traffic.voted_in(agent, burst.end, now)
    }


def _members(
    group: Sequence[Burst],
    votes_of: dict[str, list[Action]],
    voters: dict[Action, int],
    traffic: _Traffic,
    now: float,
    rules: RingRules,
) -> list[str]:
    """The group's agents in its core (its least likely burst, or half its
    bursts and at least two) whose recent votes are mostly the group's; and
    the agents of its least likely burst, on an action of the group's own,
    who have not voted since (`after_s` on)."""
    strongest = min(group, key=lambda burst: burst.log10_chance)
    bursts_of: dict[str, int] = defaultdict(int)
    for burst in group:
        for agent in burst.agents:
            bursts_of[agent] += 1
    # Against its item's prevailing direction (a brigade on the #1), only
    # its densest stretch: widened, it takes in the honest voters of the
    # same direction minutes either side.
    core = strongest.tight if _against(strongest, voters) else strongest.agents
    agents = {agent for agent, n in bursts_of.items() if agent in core or 2 <= n >= len(group) / 2}
    crowd = max(rules.crowd_voters, rules.crowd_share * (len(votes_of) - len(agents)))
    in_group: dict[Action, int] = defaultdict(int)
    for agent in agents:
        for action in votes_of[agent]:
            in_group[action] += 1
    # The group's own actions: those a quarter of it voted, casting most of
    # their recent votes. Not the popular songs its camouflage made bursty:
    # their voters are mostly others, honest agents among them.
    common = max(2, len(agents) / 4)
    mostly_ours = {action for action, count in in_group.items() if count >= common and 2 * count >= voters[action]}
    own = set(mostly_ours)
    # And its bursts against their item's prevailing direction (a brigade
    # downvoting a song most recent votes raise): camouflage goes with the
    # crowd, so this never makes a popular song's up votes the ring's, while
    # the honest agents who also voted against it (one in five votes down,
    # spread over their sessions) can outnumber a brigade of 50 on the #1.
    own |= {burst.action for burst in group if _against(burst, voters)}
    struck_and_left: set[str] = set()
    if own_bursts := [burst for burst in group if burst.action in own]:
        # Not a popular song its camouflage made bursty (whose voters are
        # mostly others): its own least likely burst.
        burst = min(own_bursts, key=lambda b: b.log10_chance)
        whole = burst.action in mostly_ours and not _against(burst, voters)
        struck_and_left = _struck_and_left(burst, whole, traffic, now, rules)
    members = set(struck_and_left)
    for agent in agents - struck_and_left:
        counted = group_votes = 0
        for action in votes_of[agent]:
            if action in own:
                counted += 1
                group_votes += 1
            elif voters[action] - in_group[action] < crowd:
                counted += 1
        if group_votes and group_votes >= rules.member_share * counted:
            members.add(agent)
    return sorted(members)


def find_rings(votes: Sequence[RecentVote], now: float, rules: RingRules) -> list[Ring]:
    """The rings among the recent votes (each vote once: one per agent and item)."""
    traffic = _Traffic(votes, rules.session_gap_s)
    bursts = [burst for burst in _find_bursts(traffic, rules, now) if burst.log10_chance <= CANDIDATE_LOG10_CHANCE]
    if not bursts:
        return []
    votes_of: dict[str, list[Action]] = defaultdict(list)
    for vote in votes:
        votes_of[vote.agent_id].append((vote.item_type, vote.item_id, vote.direction))
    voters = {action: len(times) for action, (times, _) in traffic.actions.items()}
    rings = []
    for group in _groups(bursts):
        log10_chance = min(burst.log10_chance for burst in group)
        if log10_chance > math.log10(rules.max_chance):
            continue
        if len({burst.action[:2] for burst in group}) > rules.max_items:
            continue
        members = _members(group, votes_of, voters, traffic, now, rules)
        if len(members) < rules.min_size:
            continue
        rings.append(
            Ring(
                group_id(members),
                tuple(members),
                len({burst.action[:2] for burst in group}),
                min(burst.start for burst in group),
                max(burst.end for burst in group),
                log10_chance,
            )
        )
    return sorted(rings, key=lambda ring: ring.log10_chance)
