"""Songs and tools: validation and catalog rules, free of gRPC."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from services.common import pagination, validation
from services.common.auth import Caller
from services.common.errors import InvalidArgument, PermissionDenied, ResourceExhausted
from services.common.singleflight import SingleFlight
from services.ranking import submission_quota
from services.ranking.items import ItemT, Song, Tool
from services.ranking.search import prefix_query, searchable
from services.ranking.submission_quota import Charge, SubmissionQuotas

PLATFORM_PATTERN = re.compile(r"[a-z0-9_]{1,100}")
MAX_FEATURES = 50
MAX_PRICING_BYTES = 4096


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def validate_song(fields: dict[str, Any]) -> dict[str, Any]:
    platform = fields.get("platform", "")
    if not platform:
        raise InvalidArgument("platform", "is required (e.g. suno_ai, udio, musiclm)")
    if not PLATFORM_PATTERN.fullmatch(platform):
        raise InvalidArgument("platform", "must be 1-100 characters of lowercase letters, digits and '_'")
    tempo = fields.get("tempo")
    return {
        "id": validation.identifier("id", fields["id"]) if fields.get("id") else _new_id("song"),
        "title": validation.text("title", fields.get("title", ""), min_len=1, max_len=500),
        "artist": validation.text("artist", fields.get("artist", ""), min_len=1, max_len=500),
        "platform": platform,
        "platform_url": validation.http_url("platform_url", fields.get("platform_url", "")),
        "genre": validation.text("genre", fields.get("genre", ""), max_len=100),
        "mood": validation.text("mood", fields.get("mood", ""), max_len=100),
        "tempo": None if tempo is None else validation.int_range("tempo", tempo, 20, 400),
    }


def validate_tool(fields: dict[str, Any]) -> dict[str, Any]:
    features = fields.get("features", [])
    if len(features) > MAX_FEATURES:
        raise InvalidArgument("features", f"must have at most {MAX_FEATURES} entries")
    pricing = fields.get("pricing") or {}
    if len(repr(pricing)) > MAX_PRICING_BYTES:
        raise InvalidArgument("pricing", f"must be at most {MAX_PRICING_BYTES} bytes")
    validation.no_nul_anywhere("pricing", pricing)
    return {
        "id": validation.identifier("id", fields["id"]) if fields.get("id") else _new_id("tool"),
        "name": validation.text("name", fields.get("name", ""), min_len=1, max_len=500),
        "website": validation.http_url("website", fields.get("website", "")),
        "affiliate_link": validation.http_url("affiliate_link", fields.get("affiliate_link", "")),
        "commission_rate": validation.int_range("commission_rate", fields.get("commission_rate", 0), 0, 100),
        "category": validation.text("category", fields.get("category", ""), max_len=100),
        "features": [validation.text(f"features[{i}]", f, min_len=1, max_len=200) for i, f in enumerate(features)],
        "pricing": pricing,
    }


class CatalogStorePort(Protocol):
    """What Catalog needs of the catalog store (services/ranking/store/catalog.py).

    create_item raises AlreadyExists for an id in use or once deleted, and
    counts the item against the charge's day in the same transaction (see
    submission_quota.Charge); get_item and delete_item raise NotFound for an
    unknown id."""

    async def create_item(self, kind: type[ItemT], values: dict[str, Any], charge: Charge | None = None) -> ItemT: ...

    async def get_item(self, kind: type[ItemT], item_id: str) -> ItemT: ...

    async def list_items(
        self,
        kind: type[ItemT],
        filters: dict[str, str],
        search: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[ItemT]: ...

    async def delete_item(self, item_type: str, item_id: str) -> None: ...


class Catalog:
    def __init__(
        self,
        store: CatalogStorePort,
        quotas: SubmissionQuotas | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),  # injectable for tests
    ) -> None:
        """`quotas`: songs per agent per UTC day by tier (None: no quota)."""
        self.store = store
        self.quotas = quotas
        self.clock = clock
        # Concurrent reads of one item share a Redis round trip (a hot song
        # polled by many clients); nothing is cached, so none is staler than
        # the read already in flight.
        self._reads = SingleFlight()

    async def create_song(self, caller: Caller, fields: dict[str, Any]) -> Song:
        values = validate_song(fields)
        values["submitted_by"] = caller.agent_id
        values["search_text"] = searchable(values["title"], values["artist"])
        return await self.store.create_item(Song, values, self._charge(caller))

    def _charge(self, caller: Caller) -> Charge | None:
        """What a song costs the caller: one submission of its day, refused
        past its tier's quota. The admin's are not counted."""
        if self.quotas is None or caller.is_admin:
            return None
        now = self.clock()
        limit = self.quotas.limit(caller.tier)

        def admit(used: int) -> None:
            refused = submission_quota.refusal(caller.tier, limit, used, now)
            if refused is not None:
                raise ResourceExhausted(refused.message, retry_after_s=refused.retry_after_s)

        return Charge(caller.agent_id, submission_quota.utc_day(now)[0], admit)

    async def create_tool(self, caller: Caller, fields: dict[str, Any]) -> Tool:
        if not caller.is_admin:
            raise PermissionDenied("adding a tool needs the admin key")
        values = validate_tool(fields)
        values["search_text"] = searchable(values["name"])
        return await self.store.create_item(Tool, values)

    async def get(self, kind: type[ItemT], item_id: str) -> ItemT:
        item_id = validation.identifier(f"{kind.item_type}_id", item_id)
        # Callers share the answer: items are frozen.
        item: ItemT = await self._reads.do((kind.item_type, item_id), lambda: self.store.get_item(kind, item_id))
        return item

    async def delete(self, caller: Caller, kind: type[Song] | type[Tool], item_id: str) -> None:
        item_type = kind.item_type
        if not caller.is_admin:
            raise PermissionDenied(f"deleting a {item_type} needs the admin key")
        await self.store.delete_item(item_type, validation.identifier(f"{item_type}_id", item_id))

    async def list(
        self, kind: type[ItemT], filters: dict[str, str], query: str, page_size: int, page_token: str
    ) -> tuple[list[ItemT], str]:
        filters = {name: validation.text(name, value, max_len=100) for name, value in filters.items()}
        query = validation.text("q", query, max_len=200)
        search = prefix_query(query) if query else None

        def parse(position: list[Any]) -> tuple[str, str]:
            pagination.position_time(position[0])  # ValueError/TypeError: not ours
            return position[0], str(position[1])

        return await pagination.paginate(
            page_size,
            page_token,
            lambda limit, after: self.store.list_items(kind, filters, search, limit, after),
            lambda item: [item.created_at.isoformat(), item.id],
            parse,
            scope=pagination.list_scope(kind.item_type, q=query, **filters),
        )
