from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.ranking.catalog import validate_song, validate_tool


def test_song_gets_an_id_and_keeps_its_fields() -> None:
    song = validate_song({"title": " T ", "artist": "A", "platform": "suno_ai", "tempo": 120})
    assert song["id"].startswith("song-") and song["title"] == "T" and song["tempo"] == 120


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "T", "artist": "A"}, "platform"),
        ({"title": "T", "artist": "A", "platform": "Suno AI"}, "platform"),
        ({"title": "T", "artist": "A", "platform": "x", "tempo": 19}, "tempo"),
        ({"title": "T", "artist": "", "platform": "x"}, "artist"),
        ({"title": "T", "artist": "A", "platform": "x", "genre": "g" * 101}, "genre"),
    ],
)
def test_song_rules(fields: dict, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_song(fields)
    assert caught.value.field == field


def test_tool_rules() -> None:
    tool = validate_tool({"name": "Udio", "commission_rate": 30, "features": ["stems"], "pricing": {"pro": 10}})
    assert tool["id"].startswith("tool-") and tool["features"] == ["stems"]
    with pytest.raises(InvalidArgument, match="commission_rate"):
        validate_tool({"name": "X", "commission_rate": 101})
    with pytest.raises(InvalidArgument, match="features"):
        validate_tool({"name": "X", "features": ["f"] * 51})
