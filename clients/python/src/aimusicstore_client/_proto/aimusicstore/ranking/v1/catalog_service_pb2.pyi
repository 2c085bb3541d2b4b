from aimusicstore_client._proto.aimusicstore.api.v1 import annotations_pb2 as _annotations_pb2
from aimusicstore_client._proto.aimusicstore.ranking.v1 import catalog_pb2 as _catalog_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateSongRequest(_message.Message):
    __slots__ = ("song",)
    SONG_FIELD_NUMBER: _ClassVar[int]
    song: _catalog_pb2.Song
    def __init__(self, song: _Optional[_Union[_catalog_pb2.Song, _Mapping]] = ...) -> None: ...

class GetSongRequest(_message.Message):
    __slots__ = ("song_id",)
    SONG_ID_FIELD_NUMBER: _ClassVar[int]
    song_id: str
    def __init__(self, song_id: _Optional[str] = ...) -> None: ...

class ListSongsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "platform", "genre", "mood", "q")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    platform: str
    genre: str
    mood: str
    q: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., platform: _Optional[str] = ..., genre: _Optional[str] = ..., mood: _Optional[str] = ..., q: _Optional[str] = ...) -> None: ...

class ListSongsResponse(_message.Message):
    __slots__ = ("songs", "next_page_token")
    SONGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    songs: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Song]
    next_page_token: str
    def __init__(self, songs: _Optional[_Iterable[_Union[_catalog_pb2.Song, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteSongRequest(_message.Message):
    __slots__ = ("song_id",)
    SONG_ID_FIELD_NUMBER: _ClassVar[int]
    song_id: str
    def __init__(self, song_id: _Optional[str] = ...) -> None: ...

class DeleteSongResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateToolRequest(_message.Message):
    __slots__ = ("tool",)
    TOOL_FIELD_NUMBER: _ClassVar[int]
    tool: _catalog_pb2.Tool
    def __init__(self, tool: _Optional[_Union[_catalog_pb2.Tool, _Mapping]] = ...) -> None: ...

class GetToolRequest(_message.Message):
    __slots__ = ("tool_id",)
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    def __init__(self, tool_id: _Optional[str] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "category", "q")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    Q_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    category: str
    q: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., category: _Optional[str] = ..., q: _Optional[str] = ...) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools", "next_page_token")
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Tool]
    next_page_token: str
    def __init__(self, tools: _Optional[_Iterable[_Union[_catalog_pb2.Tool, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteToolRequest(_message.Message):
    __slots__ = ("tool_id",)
    TOOL_ID_FIELD_NUMBER: _ClassVar[int]
    tool_id: str
    def __init__(self, tool_id: _Optional[str] = ...) -> None: ...

class DeleteToolResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
