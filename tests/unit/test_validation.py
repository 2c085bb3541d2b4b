from __future__ import annotations

import pytest

from services.common import pagination, validation
from services.common.errors import InvalidArgument


@pytest.mark.parametrize("good", ["a", "A9", "song-1", "x.y_z-0", "a" * 128])
def test_identifier_accepts_the_contract_pattern(good: str) -> None:
    assert validation.identifier("id", good) == good


@pytest.mark.parametrize("bad", ["", "-a", ".a", "a b", "a/b", "a" * 129, "é", "a\x00"])
def test_identifier_rejects_everything_else(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validation.identifier("item_id", bad)
    assert caught.value.field == "item_id"


def test_text_bounds_name_the_field() -> None:
    assert validation.text("title", "  Song  ", min_len=1, max_len=10) == "Song"
    with pytest.raises(InvalidArgument, match="title: is required"):
        validation.text("title", "   ", min_len=1, max_len=10)
    with pytest.raises(InvalidArgument, match="at most 3"):
        validation.text("genre", "rock!", max_len=3)


@pytest.mark.parametrize("url", ["https://suno.ai/song/1", "http://x.y"])
def test_http_url_accepts_absolute_http_urls(url: str) -> None:
    assert validation.http_url("platform_url", url) == url


@pytest.mark.parametrize("url", ["ftp://x.y", "suno.ai/x", "https://", "javascript:alert(1)", "https://a b"])
def test_http_url_rejects_others(url: str) -> None:
    with pytest.raises(InvalidArgument, match="platform_url"):
        validation.http_url("platform_url", url)


def test_choice_lists_what_is_allowed() -> None:
    with pytest.raises(InvalidArgument, match="must be one of song, tool"):
        validation.item_type("album")


def test_page_size_defaults_caps_and_rejects_negative() -> None:
    assert pagination.page_size(0) == 20
    assert pagination.page_size(7) == 7
    assert pagination.page_size(1000) == 100
    with pytest.raises(InvalidArgument, match="page_size"):
        pagination.page_size(-1)


def test_page_tokens_round_trip_and_reject_garbage() -> None:
    scope = pagination.list_scope("song", genre="pop", q="")
    token = pagination.encode_token(["2026-11-22T00:00:00+00:00", "song-1"], scope)
    assert pagination.decode_token(token, 2, scope) == ["2026-11-22T00:00:00+00:00", "song-1"]
    assert pagination.decode_token("", 2, scope) is None
    for garbage in ["!!!", "bm90IGpzb24", pagination.encode_token([1, 2, 3], scope)]:
        with pytest.raises(InvalidArgument, match="page_token"):
            pagination.decode_token(garbage, 2, scope)


def test_a_page_token_is_valid_only_for_its_list_and_parameters() -> None:
    scope = pagination.list_scope("song", genre="pop", q="")
    token = pagination.encode_token(["2026-11-22T00:00:00+00:00", "song-1"], scope)
    assert pagination.list_scope("song", q="", genre="pop") == scope  # parameter order does not matter
    for other in [
        pagination.list_scope("tool", genre="pop", q=""),
        pagination.list_scope("song", genre="rock", q=""),
        pagination.list_scope("song", genre="pop", q="x"),
    ]:
        with pytest.raises(InvalidArgument, match="another list or other filters"):
            pagination.decode_token(token, 2, other)


@pytest.mark.parametrize(
    "url", ["https://a.b/\x00", "http://[::1/", "http://a.b:port/", "https://a.b/\u0085x", "http:///path"]
)
def test_urls_that_do_not_parse_or_hold_control_characters_are_refused(url: str) -> None:
    with pytest.raises(InvalidArgument, match="platform_url"):
        validation.http_url("platform_url", url)


def test_a_real_url_is_kept() -> None:
    url = "https://suno.com/song/abc?x=1#t"
    assert validation.http_url("platform_url", url) == url


@pytest.mark.parametrize("pricing", [{"plan": "a\x00b"}, {"a\x00": 1}, {"tiers": [{"name": "\x00"}]}])
def test_nul_anywhere_in_a_json_value_is_refused(pricing: dict) -> None:
    with pytest.raises(InvalidArgument, match="pricing: must not contain NUL"):
        validation.no_nul_anywhere("pricing", pricing)


@pytest.mark.parametrize(
    "value", ["0001-01-01T00:00:00-23:59", "9999-12-31T23:59:59-23:59", "2026-11-22T00:00:00", "yesterday", 5]
)
def test_page_token_times_must_be_real_row_times(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        pagination.position_time(value)
    assert pagination.position_time("2026-11-22T00:00:00+00:00").year == 2026
