"""Catalog search text and queries (pure; the integration tests run them in PostgreSQL)."""

from __future__ import annotations

from services.ranking.search import MAX_QUERY_WORDS, prefix_query, searchable


def test_search_text_is_case_folded_beyond_ascii() -> None:
    assert searchable("Ünïcödé", "BJÖRK AI") == "ünïcödé björk ai"
    assert searchable("Straße") == "strasse"  # casefold, not lower: "STRASSE" finds it too


def test_every_query_word_becomes_a_prefix_that_must_match() -> None:
    assert prefix_query("ud") == "ud:*"
    assert prefix_query("Midnight  BJÖRK") == "midnight:* & björk:*"


def test_punctuation_and_operators_never_reach_the_tsquery() -> None:
    # to_tsquery syntax (&, |, !, :, quotes, parentheses) would be a 500 or a
    # different query; the parser splits words at punctuation anyway.
    assert prefix_query("lo-fi") == "lo:* & fi:*"
    assert prefix_query("suno_ai") == "suno:* & ai:*"
    assert prefix_query("a & b | !c:* 'd' (e)") == "a:* & b:* & c:* & d:* & e:*"
    assert prefix_query("!!! ---") == ""


def test_long_queries_are_cut_to_a_bounded_number_of_words() -> None:
    assert prefix_query(" ".join(f"w{n}" for n in range(100))).count(":*") == MAX_QUERY_WORDS
