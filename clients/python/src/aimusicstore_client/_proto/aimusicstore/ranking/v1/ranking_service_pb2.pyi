import datetime

from aimusicstore_client._proto.aimusicstore.api.v1 import annotations_pb2 as _annotations_pb2
from google.api import annotations_pb2 as _annotations_pb2_1
from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChartEntry(_message.Message):
    __slots__ = ("rank", "item_type", "item_id", "title", "artist", "up_votes", "down_votes", "score", "trending_score", "previous_rank", "movement", "peak_rank", "days_on_chart", "weighted_score")
    RANK_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TRENDING_SCORE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RANK_FIELD_NUMBER: _ClassVar[int]
    MOVEMENT_FIELD_NUMBER: _ClassVar[int]
    PEAK_RANK_FIELD_NUMBER: _ClassVar[int]
    DAYS_ON_CHART_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_SCORE_FIELD_NUMBER: _ClassVar[int]
    rank: int
    item_type: str
    item_id: str
    title: str
    artist: str
    up_votes: int
    down_votes: int
    score: int
    trending_score: float
    previous_rank: int
    movement: str
    peak_rank: int
    days_on_chart: int
    weighted_score: float
    def __init__(self, rank: _Optional[int] = ..., item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., title: _Optional[str] = ..., artist: _Optional[str] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ..., trending_score: _Optional[float] = ..., previous_rank: _Optional[int] = ..., movement: _Optional[str] = ..., peak_rank: _Optional[int] = ..., days_on_chart: _Optional[int] = ..., weighted_score: _Optional[float] = ...) -> None: ...

class GetTrendingRequest(_message.Message):
    __slots__ = ("limit", "genre", "platform", "category")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    limit: int
    genre: str
    platform: str
    category: str
    def __init__(self, limit: _Optional[int] = ..., genre: _Optional[str] = ..., platform: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class GetTrendingResponse(_message.Message):
    __slots__ = ("songs", "tools", "updated_at")
    SONGS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    songs: _containers.RepeatedCompositeFieldContainer[ChartEntry]
    tools: _containers.RepeatedCompositeFieldContainer[ChartEntry]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, songs: _Optional[_Iterable[_Union[ChartEntry, _Mapping]]] = ..., tools: _Optional[_Iterable[_Union[ChartEntry, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTopChartRequest(_message.Message):
    __slots__ = ("period", "date", "item_type", "limit", "sort", "genre", "platform")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SORT_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    period: str
    date: str
    item_type: str
    limit: int
    sort: str
    genre: str
    platform: str
    def __init__(self, period: _Optional[str] = ..., date: _Optional[str] = ..., item_type: _Optional[str] = ..., limit: _Optional[int] = ..., sort: _Optional[str] = ..., genre: _Optional[str] = ..., platform: _Optional[str] = ...) -> None: ...

class GetTopChartResponse(_message.Message):
    __slots__ = ("period", "date", "item_type", "entries", "updated_at")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    DATE_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    period: str
    date: str
    item_type: str
    entries: _containers.RepeatedCompositeFieldContainer[ChartEntry]
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, period: _Optional[str] = ..., date: _Optional[str] = ..., item_type: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[ChartEntry, _Mapping]]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetItemHistoryRequest(_message.Message):
    __slots__ = ("collection", "item_id", "days")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    item_id: str
    days: int
    def __init__(self, collection: _Optional[str] = ..., item_id: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class HistoryPoint(_message.Message):
    __slots__ = ("date", "rank", "score", "up_votes", "down_votes")
    DATE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    date: str
    rank: int
    score: int
    up_votes: int
    down_votes: int
    def __init__(self, date: _Optional[str] = ..., rank: _Optional[int] = ..., score: _Optional[int] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ...) -> None: ...

class GetItemHistoryResponse(_message.Message):
    __slots__ = ("item_type", "item_id", "points")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    points: _containers.RepeatedCompositeFieldContainer[HistoryPoint]
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., points: _Optional[_Iterable[_Union[HistoryPoint, _Mapping]]] = ...) -> None: ...
