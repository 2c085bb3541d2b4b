from __future__ import annotations

from services.common.caches import jittered_ttl_cache


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
