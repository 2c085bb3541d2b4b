"""Catalog (songs and tools: create, get, list, delete) against an in-memory
store: validation, who may do what, paging and search."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from services.common.auth import ADMIN, Caller
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted
from services.ranking.catalog import Catalog
from services.ranking.items import Song, Tool
from services.ranking.submission_quota import SubmissionQuotas
from tests.unit.ranking.fakes import FakeCatalogStore

AGENT = Caller(agent_id="agent-7")
SONG = {"title": "Night Drive", "artist": "Björk", "platform": "suno_ai", "genre": "synthwave"}


@pytest.fixture
def store() -> FakeCatalogStore:
    return FakeCatalogStore()


@pytest.fixture
def catalog(store: FakeCatalogStore) -> Catalog:
    return Catalog(store)


async def test_a_song_is_stored_validated_with_its_submitter_and_search_text(
    catalog: Catalog, store: FakeCatalogStore
) -> None:
    created = await catalog.create_song(AGENT, SONG | {"id": "s1", "title": "  Night Drive  ", "tempo": 120})
    assert isinstance(created, Song)
    assert (created.id, created.title, created.tempo, created.submitted_by) == ("s1", "Night Drive", 120, "agent-7")
    assert (created.up_votes, created.down_votes, created.score) == (0, 0, 0)
    assert store.search_text[("song", "s1")] == "night drive björk"
    assert await catalog.get(Song, "s1") == created


async def test_a_song_without_id_gets_one(catalog: Catalog) -> None:
    first, second = await catalog.create_song(AGENT, SONG), await catalog.create_song(AGENT, SONG)
    assert first.id.startswith("song-") and second.id.startswith("song-") and first.id != second.id


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"platform": ""}, "platform"),
        ({"platform": "Suno AI"}, "platform"),
        ({"title": " "}, "title"),
        ({"tempo": 19}, "tempo"),
        ({"platform_url": "ftp://x"}, "platform_url"),
        ({"id": "bad id"}, "id"),
    ],
)
async def test_an_invalid_song_is_refused_before_the_store(
    catalog: Catalog, store: FakeCatalogStore, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as error:
        await catalog.create_song(AGENT, SONG | fields)
    assert error.value.field == field
    assert store.items["song"] == {}


async def test_only_the_admin_adds_tools(catalog: Catalog, store: FakeCatalogStore) -> None:
    with pytest.raises(PermissionDenied):
        await catalog.create_tool(AGENT, {"name": "Mixer"})
    assert store.items["tool"] == {}
    created = await catalog.create_tool(
        ADMIN, {"id": "t1", "name": "Mixer Pro", "features": ["eq"], "pricing": {"a": 1}}
    )
    assert isinstance(created, Tool)
    assert (created.name, created.features, created.pricing, created.review_count) == ("Mixer Pro", ["eq"], {"a": 1}, 0)
    assert store.search_text[("tool", "t1")] == "mixer pro"
    with pytest.raises(InvalidArgument) as error:
        await catalog.create_tool(ADMIN, {"name": "Many", "features": ["f"] * 51})
    assert error.value.field == "features"


async def test_an_id_in_use_or_deleted_is_not_given_again(catalog: Catalog) -> None:
    await catalog.create_song(AGENT, SONG | {"id": "s1"})
    with pytest.raises(AlreadyExists):
        await catalog.create_song(AGENT, SONG | {"id": "s1"})
    await catalog.delete(ADMIN, Song, "s1")
    with pytest.raises(AlreadyExists):
        await catalog.create_song(AGENT, SONG | {"id": "s1"})


async def test_get_checks_the_id_and_finds_only_its_kind(catalog: Catalog, store: FakeCatalogStore) -> None:
    await catalog.create_song(AGENT, SONG | {"id": "x1"})
    with pytest.raises(InvalidArgument) as error:
        await catalog.get(Song, "no spaces")
    assert error.value.field == "song_id" and store.reads == 0
    with pytest.raises(NotFound):
        await catalog.get(Tool, "x1")
    with pytest.raises(NotFound):
        await catalog.get(Song, "x2")


async def test_concurrent_reads_of_one_item_share_one_store_read(catalog: Catalog, store: FakeCatalogStore) -> None:
    await catalog.create_song(AGENT, SONG | {"id": "hot"})
    songs = await asyncio.gather(*(catalog.get(Song, "hot") for _ in range(5)))
    assert {s.id for s in songs} == {"hot"} and store.reads == 1


async def test_only_the_admin_deletes(catalog: Catalog) -> None:
    await catalog.create_song(AGENT, SONG | {"id": "s1"})
    with pytest.raises(PermissionDenied):
        await catalog.delete(AGENT, Song, "s1")
    assert (await catalog.get(Song, "s1")).id == "s1"
    await catalog.delete(ADMIN, Song, "s1")
    with pytest.raises(NotFound):
        await catalog.get(Song, "s1")
    with pytest.raises(NotFound):
        await catalog.delete(ADMIN, Song, "s1")
    with pytest.raises(InvalidArgument) as error:
        await catalog.delete(ADMIN, Tool, "")
    assert error.value.field == "tool_id"


async def test_lists_are_newest_first_in_pages(catalog: Catalog) -> None:
    for n in range(5):
        await catalog.create_song(AGENT, SONG | {"id": f"s{n}"})
    seen, token = [], ""
    for expected in (2, 2, 1):
        page, token = await catalog.list(Song, {"genre": ""}, "", 2, token)
        assert len(page) == expected
        seen += [s.id for s in page]
    assert seen == ["s4", "s3", "s2", "s1", "s0"] and token == ""


async def test_a_page_token_belongs_to_its_list(catalog: Catalog) -> None:
    for n in range(3):
        await catalog.create_song(AGENT, SONG | {"id": f"s{n}"})
    _, token = await catalog.list(Song, {"genre": ""}, "", 1, "")
    with pytest.raises(InvalidArgument) as error:
        await catalog.list(Song, {"genre": "rock"}, "", 1, token)
    assert error.value.field == "page_token"
    with pytest.raises(InvalidArgument):
        await catalog.list(Song, {"genre": ""}, "", 1, "not-a-token")


async def test_lists_filter_and_search(catalog: Catalog) -> None:
    await catalog.create_song(AGENT, SONG | {"id": "bjork", "genre": "pop"})
    await catalog.create_song(AGENT, SONG | {"id": "other", "title": "Ocean", "artist": "Udio Band"})
    await catalog.create_tool(ADMIN, {"id": "t1", "name": "Udio Studio", "category": "daw"})

    async def songs(filters: dict[str, str], q: str) -> list[str]:
        return [s.id for s in (await catalog.list(Song, filters, q, 0, ""))[0]]

    assert await songs({"genre": " pop "}, "") == ["bjork"]  # filters are trimmed like other text
    assert await songs({}, "BJÖ") == ["bjork"]  # case-folded prefix of a word
    assert await songs({}, "ud band") == ["other"]  # every word must match
    assert await songs({}, "!!") == []  # no words: nothing matches
    tools, _ = await catalog.list(Tool, {"category": "daw"}, "stud", 0, "")
    assert [t.id for t in tools] == ["t1"]
    with pytest.raises(InvalidArgument) as error:
        await catalog.list(Song, {}, "x" * 201, 0, "")
    assert error.value.field == "q"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def test_songs_past_the_tiers_daily_quota_are_refused_until_the_next_utc_day(store: FakeCatalogStore) -> None:
    clock = Clock()
    catalog = Catalog(store, SubmissionQuotas(free=2, pro=3), clock)
    for n in range(2):
        await catalog.create_song(AGENT, SONG | {"id": f"s{n}"})
    with pytest.raises(ResourceExhausted, match=r"quota of 2 for the free tier .* resets at 2026-12-07T00:00:00Z"):
        await catalog.create_song(AGENT, SONG | {"id": "s2"})
    # Refused: neither stored nor counted.
    assert "s2" not in store.items["song"] and store.submissions == {("agent-7", date(2026, 12, 6)): 2}
    # Others have their own count, by their own tier.
    pro = Caller(agent_id="agent-8", tier="pro")
    for n in range(3):
        await catalog.create_song(pro, SONG | {"id": f"p{n}"})
    with pytest.raises(ResourceExhausted, match="quota of 3 for the pro tier"):
        await catalog.create_song(pro, SONG | {"id": "p3"})
    clock.now += timedelta(hours=1)
    assert (await catalog.create_song(AGENT, SONG | {"id": "s2"})).id == "s2"


async def test_a_failed_submission_is_not_counted(store: FakeCatalogStore) -> None:
    catalog = Catalog(store, SubmissionQuotas(free=1, pro=1), Clock())
    await catalog.delete(ADMIN, Song, (await catalog.create_song(ADMIN, SONG | {"id": "gone"})).id)
    with pytest.raises(AlreadyExists):
        await catalog.create_song(AGENT, SONG | {"id": "gone"})
    assert (await catalog.create_song(AGENT, SONG | {"id": "first"})).id == "first"


async def test_the_admin_and_enterprise_agents_are_unlimited(store: FakeCatalogStore) -> None:
    catalog = Catalog(store, SubmissionQuotas(free=0, pro=0), Clock())
    enterprise = Caller(agent_id="big", tier="enterprise")
    for n in range(5):
        await catalog.create_song(ADMIN, SONG | {"id": f"a{n}"})
        await catalog.create_song(enterprise, SONG | {"id": f"e{n}"})
    # The admin's are not even counted; an enterprise agent's are.
    assert store.submissions == {("big", date(2026, 12, 6)): 5}
    with pytest.raises(ResourceExhausted):
        await catalog.create_song(AGENT, SONG)
