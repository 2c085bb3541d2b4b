"""Input checks shared by every service; each error names its field."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from services.common import vocabulary
from services.common.errors import InvalidArgument

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ITEM_TYPES = vocabulary.ITEM_TYPES


def identifier(field: str, value: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field, "must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def text(field: str, value: str, *, max_len: int, min_len: int = 0) -> str:
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    stripped = value.strip()
    if len(stripped) < min_len:
        raise InvalidArgument(field, "is required" if min_len == 1 else f"must be at least {min_len} characters")
    if len(stripped) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters (got {len(stripped)})")
    return stripped


def choice(field: str, value: str, allowed: tuple[str, ...], default: str | None = None) -> str:
    if not value and default is not None:
        return default
    if value not in allowed:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidArgument(field, f"must be one of {', '.join(allowed)} (got {shown!r})")
    return value


def item_type(value: str, field: str = "item_type") -> str:
    return choice(field, value, ITEM_TYPES)


def http_url(field: str, value: str, *, required: bool = False, max_len: int = 2000) -> str:
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return ""
    if len(value) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InvalidArgument(field, "must be an absolute http(s) URL without spaces or control characters")
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:  # an unclosed IPv6 host "http://[::1/", a port "http://a:x/"
        raise InvalidArgument(field, "must be an absolute http(s) URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidArgument(field, "must be an absolute http(s) URL")
    return value


def no_nul_anywhere(field: str, value: object) -> None:
    """A JSON value (keys included) PostgreSQL can store: jsonb has no NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidArgument(field, "must not contain NUL characters")
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul_anywhere(field, key)
            no_nul_anywhere(field, item)
    elif isinstance(value, list):
        for item in value:
            no_nul_anywhere(field, item)


def int_range(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low} and {high} (got {value})")
    return value


def count(field: str, value: int, *, default: int, maximum: int) -> int:
    """A how-many parameter (a chart's limit, a history's days): 0 means the
    default; past the maximum is an error, not clamped, so that each answer
    has one spelling (and one entry in a cache)."""
    if value == 0:
        return default
    if value < 0 or value > maximum:
        raise InvalidArgument(field, f"must be between 1 and {maximum} (got {value}); leave it out for {default}")
    return value
