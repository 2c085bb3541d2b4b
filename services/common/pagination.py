"""AIP-158 pagination: page sizes and opaque page tokens.

A token is the keyset position of the last row returned, plus a digest of
the list and request parameters it was returned for (url-safe base64 of
JSON). Clients must treat it as opaque; a token that does not decode is
INVALID_ARGUMENT, and so is one used on another list or with other filters
(AIP-158: every parameter but page_size must stay the same), which would
otherwise silently skip or repeat rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from services.common.errors import InvalidArgument

T = TypeVar("T")
BAD_TOKEN = "is not a token this list returned; start again without it"
OTHER_LIST_TOKEN = (
    "was returned for another list or other filters; send it with the parameters of the request "
    "that returned it, or start again without it"
)

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


def list_scope(name: str, **params: object) -> str:
    """What a page token is valid for: the list and every request parameter
    but page_size."""
    return name + "?" + "&".join(f"{key}={params[key]!r}" for key in sorted(params))


def _digest(scope: str) -> str:
    return hashlib.blake2b(scope.encode(), digest_size=6).hexdigest()


def encode_token(position: list[Any], scope: str) -> str:
    raw = json.dumps([*position, _digest(scope)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, length: int, scope: str) -> list[Any] | None:
    """The position in `token` (`length` values), None for no token."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        decoded = None
    if not isinstance(decoded, list) or len(decoded) != length + 1:
        raise InvalidArgument("page_token", BAD_TOKEN)
    if decoded[-1] != _digest(scope):
        raise InvalidArgument("page_token", OTHER_LIST_TOKEN)
    return decoded[:-1]


# A token's digest is not a signature: anyone can build one for a list. So
# its values must also be ones PostgreSQL takes as parameters, or a forged
# token would be a 500 (an id past BIGINT, a NUL in a text value).
_BIGINT = range(-(2**63), 2**63)


def _storable(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(_storable(v) for v in value)
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value in _BIGINT
    if isinstance(value, str):
        return "\x00" not in value and len(value) <= 1000
    return True


def position_time(value: object) -> datetime:
    """A timestamp from a page token: an RFC 3339 time with its offset, after
    2000 (no row is older than the service); ValueError/TypeError otherwise,
    so a forged "0001-01-01T00:00:00-23:59" is the client's 400, not an
    overflow in PostgreSQL."""
    if not isinstance(value, str):
        raise TypeError("not a timestamp")
    at = datetime.fromisoformat(value)
    try:
        year = at.astimezone(UTC).year if at.tzinfo is not None else 0
    except OverflowError:  # past year 9999 in UTC
        year = 0
    if not 2000 <= year <= 9998:
        raise ValueError("not a timestamp of a row")
    return at


async def paginate(
    page_size_value: int,
    page_token: str,
    fetch: Callable[[int, Any], Awaitable[list[T]]],
    position_of: Callable[[T], list[Any]],
    parse_position: Callable[[list[Any]], Any],
    *,
    scope: str,
) -> tuple[list[T], str]:
    """One keyset page: `fetch(limit, after)` returns rows after the decoded
    position (None on the first page), in order; the next token is the last
    row's `position_of`. `parse_position` turns a decoded token back into what
    `fetch` expects and raises TypeError/ValueError when it does not fit.
    `scope` (see `list_scope`) names the list and its parameters."""
    limit = page_size(page_size_value)
    raw = decode_token(page_token, 2, scope)
    after = None
    if raw is not None:
        try:
            after = parse_position(raw)
        except (TypeError, ValueError):
            raise InvalidArgument("page_token", BAD_TOKEN) from None
        if not _storable(after):
            raise InvalidArgument("page_token", BAD_TOKEN)
    rows = await fetch(limit + 1, after)
    if len(rows) <= limit:
        return rows, ""
    rows = rows[:limit]
    return rows, encode_token(position_of(rows[-1]), scope)
