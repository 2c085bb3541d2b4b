"""Catalog search (`q`): every word of the query must begin a word of the
item's title and artist (songs) or name (tools), in any case.

Both sides are case-folded here, in Python, rather than by PostgreSQL: the
database's own lowering follows its locale, and under the C locale (the
embedded server's, and a common choice) it folds ASCII letters only, so
"BJÖRK" missed "Björk". The folded text is stored with the item
(`search_text`) and indexed as a tsvector; a query becomes a prefix
tsquery, so "ud" finds "Udio" as a client typing a name expects.
"""

from __future__ import annotations

import re

# Letters and digits only: PostgreSQL's text parser splits words at
# punctuation and underscores too, so the query's words are the index's.
_WORD = re.compile(r"[^\W_]+")
MAX_QUERY_WORDS = 16


def searchable(*texts: str) -> str:
    """What an item is searched by: its texts, case-folded."""
    return " ".join(texts).casefold()


def prefix_query(query: str) -> str:
    """A to_tsquery('simple', ...) text matching items having, for every word
    of `query`, a word that begins with it; "" when `query` has no words."""
    words = _WORD.findall(query.casefold())[:MAX_QUERY_WORDS]
    return " & ".join(f"{word}:*" for word in words)
