"""Catalog items as the ranking service reads them: one typed row per song
or tool (the columns of ranking.songs and ranking.tools, less the search
columns), whether read from PostgreSQL or from the Redis copy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar


@dataclass(frozen=True)
class Song:
    item_type: ClassVar[str] = "song"

    id: str
    title: str
    artist: str
    platform: str
    platform_url: str
    genre: str
    mood: str
    tempo: int | None
    submitted_by: str
    created_at: datetime
    up_votes: int
    down_votes: int
    score: int


@dataclass(frozen=True)
class Tool:
    item_type: ClassVar[str] = "tool"

    id: str
    name: str
    website: str
    affiliate_link: str
    commission_rate: int
    category: str
    features: list[str]
    pricing: dict[str, Any]
    created_at: datetime
    up_votes: int
    down_votes: int
    score: int
    rating_sum: int
    rating_count: int
    review_count: int


Item = Song | Tool
# A row of either kind, typed by the class asked for: get_item(Song, ...) is a Song.
ItemT = TypeVar("ItemT", Song, Tool)
ITEM_CLASSES: dict[str, type[Song] | type[Tool]] = {"song": Song, "tool": Tool}


def title_and_artist(item: Item | None) -> tuple[str, str]:
    """What a chart entry shows of an item (a tool's name is its title;
    nothing for an item gone from the catalog)."""
    if isinstance(item, Song):
        return item.title, item.artist
    if isinstance(item, Tool):
        return item.name, ""
    return "", ""
