import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Song(_message.Message):
    __slots__ = ("id", "title", "artist", "platform", "platform_url", "genre", "mood", "tempo", "submitted_by", "created_at", "up_votes", "down_votes", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    ARTIST_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_URL_FIELD_NUMBER: _ClassVar[int]
    GENRE_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    TEMPO_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    artist: str
    platform: str
    platform_url: str
    genre: str
    mood: str
    tempo: int
    submitted_by: str
    created_at: _timestamp_pb2.Timestamp
    up_votes: int
    down_votes: int
    score: int
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., artist: _Optional[str] = ..., platform: _Optional[str] = ..., platform_url: _Optional[str] = ..., genre: _Optional[str] = ..., mood: _Optional[str] = ..., tempo: _Optional[int] = ..., submitted_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("id", "name", "website", "affiliate_link", "commission_rate", "category", "features", "pricing", "created_at", "up_votes", "down_votes", "score", "rating", "review_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEBSITE_FIELD_NUMBER: _ClassVar[int]
    AFFILIATE_LINK_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_RATE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PRICING_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    REVIEW_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    website: str
    affiliate_link: str
    commission_rate: int
    category: str
    features: _containers.RepeatedScalarFieldContainer[str]
    pricing: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    up_votes: int
    down_votes: int
    score: int
    rating: float
    review_count: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., website: _Optional[str] = ..., affiliate_link: _Optional[str] = ..., commission_rate: _Optional[int] = ..., category: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., pricing: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ..., rating: _Optional[float] = ..., review_count: _Optional[int] = ...) -> None: ...
