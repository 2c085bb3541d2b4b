from __future__ import annotations

import asyncio

import pytest

from services.common.caches import RevalidatingCache, jittered_ttl_cache


def test_entries_filled_together_expire_spread_over_the_jitter_window() -> None:
    now = [0.0]
    cache = jittered_ttl_cache(maxsize=10_000, ttl_s=10.0, jitter=0.2, timer=lambda: now[0])
    for key in range(1_000):
        cache[key] = True

    def alive_at(t: float) -> int:
        now[0] = t
        return sum(1 for key in range(1_000) if key in cache)

    assert alive_at(7.9) == 1_000  # nothing before ttl × (1 - jitter)
    assert 300 < alive_at(10.0) < 700  # about half at the nominal TTL
    assert alive_at(12.1) == 0  # everything by ttl × (1 + jitter)


class Peer:
    """Stands in for the other service: counts calls, answers when told."""

    def __init__(self) -> None:
        self.calls = 0
        self.answer: str | None = "v1"
        self.fail = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def load(self) -> str | None:
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("peer down")
        return self.answer


def make(now: list[float]) -> RevalidatingCache[str, str]:
    return RevalidatingCache("thing", maxsize=100, ttl_s=10.0, grace_s=100.0, timer=lambda: now[0])


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_known_key_is_served_from_the_cache() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    assert await cache.get("k", peer.load) == "v1"
    now[0] = 5.0
    assert await cache.get("k", peer.load) == "v1"
    assert peer.calls == 1


async def test_past_its_ttl_an_entry_is_served_at_once_while_one_call_refreshes_it() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    await cache.get("k", peer.load)
    now[0], peer.answer = 13.0, "v2"
    peer.gate.clear()  # the peer is slow: nobody may wait for it
    assert [await cache.get("k", peer.load) for _ in range(20)] == ["v1"] * 20
    await settle()
    assert [await cache.get("k", peer.load) for _ in range(20)] == ["v1"] * 20
    assert peer.calls == 2  # one refresh for forty uses
    peer.gate.set()
    await settle()
    assert await cache.get("k", peer.load) == "v2"
    assert peer.calls == 2


async def test_a_failed_refresh_keeps_the_last_answer_and_retries_a_ttl_later() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    await cache.get("k", peer.load)
    now[0], peer.fail = 13.0, True
    assert await cache.get("k", peer.load) == "v1"
    await settle()
    assert [await cache.get("k", peer.load) for _ in range(5)] == ["v1"] * 5
    assert peer.calls == 2  # not one attempt per use while the peer is down
    now[0] = 26.0
    assert await cache.get("k", peer.load) == "v1"
    await settle()
    assert peer.calls == 3


async def test_past_the_grace_a_key_is_loaded_again_before_answering() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    await cache.get("k", peer.load)
    now[0], peer.fail = 200.0, True
    with pytest.raises(ConnectionError):
        await cache.get("k", peer.load)


async def test_a_key_the_peer_no_longer_knows_is_forgotten() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    await cache.get("k", peer.load)
    now[0], peer.answer = 13.0, None  # revoked, deleted
    assert await cache.get("k", peer.load) == "v1"  # the refresh is under way
    await settle()
    assert await cache.get("k", peer.load) is None
    assert "k" not in cache


async def test_expire_all_makes_every_entry_refresh_on_its_next_use() -> None:
    now, peer = [0.0], Peer()
    cache = make(now)
    await cache.get("k", peer.load)
    peer.answer = "v2"
    cache.expire_all()
    assert await cache.get("k", peer.load) == "v1"
    await settle()
    assert await cache.get("k", peer.load) == "v2"


async def test_a_forget_during_a_load_is_not_undone_by_its_answer() -> None:
    # An item deleted (or a key rotated) while its check was in flight: the
    # answer from before the deletion goes to its caller, but is not cached.
    now, peer = [0.0], Peer()
    cache = make(now)
    peer.gate.clear()
    loading = asyncio.create_task(cache.get("k", peer.load))
    await settle()
    cache.forget("k")
    peer.gate.set()
    assert await loading == "v1"
    assert "k" not in cache
    peer.answer = None  # the peer now says it is gone
    assert await cache.get("k", peer.load) is None
    assert peer.calls == 2


async def test_a_background_refresh_does_not_run_under_the_request_that_noticed_it() -> None:
    from services.common.logs import request_id_var

    now, seen = [0.0], []

    async def load() -> str:
        seen.append(request_id_var.get())
        return "v"

    cache = make(now)
    request_id_var.set("first-request")
    await cache.get("k", load)
    now[0] = 50.0  # past the TTL, within the grace: served stale, refreshed behind
    request_id_var.set("second-request")
    assert await cache.get("k", load) == "v"
    await settle()
    request_id_var.set("")
    assert seen == ["first-request", ""]
