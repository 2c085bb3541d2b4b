"""services/common/vocabulary.py: each allowed-value set, and every place
that names its values (proto comments, docs, the database) agreeing with it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import descriptors
from services.common import validation, vocabulary
from services.common.errors import InvalidArgument

ROOT = Path(__file__).resolve().parents[2]
_STRING = 9  # FieldDescriptorProto.TYPE_STRING
# A comment that lists a field's values: '"a", "b" (default) or "c"'. An
# "e.g." list of examples has no "or".
_LISTED = re.compile(r'"\w+"(?: \(default\))?(?:(?:, | or )"\w+"(?: \(default\))?)* or "\w+"(?: \(default\))?')


def _message_string_fields(
    message: Any, path: tuple[int, ...], comments: dict[tuple[int, ...], str]
) -> Iterator[tuple[str, str, str]]:
    for i, field in enumerate(message.field):
        if field.type == _STRING:
            yield message.name, field.name, " ".join(comments.get((*path, 2, i), "").split())
    for i, nested in enumerate(message.nested_type):
        yield from _message_string_fields(nested, (*path, 3, i), comments)


def _string_fields() -> Iterator[tuple[str, str, str]]:
    """(message short name, field name, its proto comment) of every string
    field in the API's packages."""
    for file in descriptors.load().files:
        if not file.package.startswith(descriptors.API_PACKAGE_PREFIX):
            continue
        comments = {
            tuple(loc.path): loc.leading_comments + loc.trailing_comments for loc in file.source_code_info.location
        }
        for i, message in enumerate(file.message_type):
            yield from _message_string_fields(message, (4, i), comments)


def test_every_value_list_in_a_proto_comment_is_the_vocabulary() -> None:
    checked = 0
    for message, field, comment in _string_fields():
        listed = _LISTED.search(comment)
        if listed is None:
            continue
        values = tuple(re.findall(r'"(\w+)"', listed.group()))
        assert vocabulary.field_values(message, field) == values, f"{message}.{field}: {comment!r}"
        checked += 1
    assert checked >= 15  # the comments were found at all


def test_every_field_the_vocabulary_names_is_a_string_field_of_the_protos() -> None:
    fields = {(message, field) for message, field, _ in _string_fields()}
    for key in vocabulary.FIELD_VALUES:
        if "." in key:
            assert tuple(key.split(".")) in fields, key
        else:
            assert any(field == key for _, field in fields), key


def test_a_field_name_that_means_something_else_elsewhere_has_no_values() -> None:
    assert vocabulary.field_values("VoteEvent", "type") == ("vote", "retract")
    assert vocabulary.field_values("Song", "type") is None
    assert vocabulary.field_values("Song", "title") is None


def test_sets_are_distinct_and_each_collection_is_its_item_type() -> None:
    for values in vocabulary.FIELD_VALUES.values():
        assert len(set(values)) == len(values) > 1
    assert tuple(f"{t}s" for t in vocabulary.ITEM_TYPES) == vocabulary.ITEM_COLLECTIONS
    assert vocabulary.VOTE_SIGNS == {"up": 1, "down": -1}


def test_validation_takes_the_vocabulary_and_names_it_in_its_error() -> None:
    for item_type in vocabulary.ITEM_TYPES:
        assert validation.item_type(item_type) == item_type
    with pytest.raises(InvalidArgument, match="must be one of song, tool"):
        validation.item_type("album")


def _section(path: str, heading: str) -> str:
    text = (ROOT / path).read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end >= 0 else len(text)]


def _words(listing: str) -> tuple[str, ...]:
    return tuple(w.strip() for w in listing.split(","))


def test_the_operations_guide_lists_the_cached_values_of_the_vocabulary() -> None:
    gateway = " ".join(_section("docs/operations.md", "## The gateway").split())
    periods = re.search(r"/api/v1/top/\{([a-z_,]+)\}", gateway)
    item_types = re.search(r"`item_type` \(([^)]*)\)", gateway)
    sorts = re.search(r"`sort` \(([^)]*)\)", gateway)
    assert periods and item_types and sorts
    assert _words(periods.group(1)) == vocabulary.CHART_PERIODS
    assert _words(item_types.group(1)) == vocabulary.ITEM_TYPES
    assert _words(sorts.group(1)) == vocabulary.CHART_SORTS


def test_the_operations_guide_gives_every_tier_its_quota() -> None:
    quotas = " ".join(_section("docs/operations.md", "## Quotas").split())
    per_tier = re.search(r"Per agent per UTC day: (.*?)\. ", quotas)
    assert per_tier
    named = re.findall(r"\b(\w+) (?:[\d,]+|unlimited)\b", per_tier.group(1))
    assert tuple(named) == vocabulary.TIERS


def test_the_database_accepts_exactly_the_tiers() -> None:
    """The CHECK constraint the reputation migrations create."""
    migrations = sorted((ROOT / "services" / "reputation" / "migrations" / "versions").glob("*.py"))
    checks = [m for path in migrations for m in re.findall(r"tier IN \(([^)]*)\)", path.read_text())]
    assert checks, "no tier CHECK constraint in the reputation migrations"
    assert tuple(v.strip(" '") for v in checks[-1].split(",")) == vocabulary.TIERS
