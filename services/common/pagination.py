"""AIP-158 pagination: page sizes and opaque page tokens.

A token is the keyset position of the last row returned (url-safe base64 of
JSON). Clients must treat it as opaque; a token that does not decode is
INVALID_ARGUMENT.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.common.errors import InvalidArgument

T = TypeVar("T")
BAD_TOKEN = "is not a token this list returned; start again without it"

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(
    value: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE, field: str = "page_size"
) -> int:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative (got {value})")
    if value == 0:
        return default
    return min(value, maximum)


def encode_token(position: list[Any]) -> str:
    raw = json.dumps(position, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, length: int) -> list[Any] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, list) or len(position) != length:
        raise InvalidArgument("page_token", BAD_TOKEN)
    return position


async def paginate(
    page_size_value: int,
    page_token: str,
    fetch: Callable[[int, Any], Awaitable[list[T]]],
    position_of: Callable[[T], list[Any]],
    parse_position: Callable[[list[Any]], Any],
) -> tuple[list[T], str]:
    """One keyset page: `fetch(limit, after)` returns rows after the decoded
    position (None on the first page), in order; the next token is the last
    row's `position_of`. `parse_position` turns a decoded token back into what
    `fetch` expects and raises TypeError/ValueError when it does not fit."""
    limit = page_size(page_size_value)
    raw = decode_token(page_token, 2)
    after = None
    if raw is not None:
        try:
            after = parse_position(raw)
        except (TypeError, ValueError):
            raise InvalidArgument("page_token", BAD_TOKEN) from None
    rows = await fetch(limit + 1, after)
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_token(position_of(rows[-1]))
