import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VoteEvent(_message.Message):
    __slots__ = ("event_id", "type", "agent_id", "item_type", "item_id", "direction", "rating", "has_review", "voted_at", "occurred_at", "traceparent")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    HAS_REVIEW_FIELD_NUMBER: _ClassVar[int]
    VOTED_AT_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACEPARENT_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    type: str
    agent_id: str
    item_type: str
    item_id: str
    direction: int
    rating: int
    has_review: bool
    voted_at: _timestamp_pb2.Timestamp
    occurred_at: _timestamp_pb2.Timestamp
    traceparent: str
    def __init__(self, event_id: _Optional[int] = ..., type: _Optional[str] = ..., agent_id: _Optional[str] = ..., item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., direction: _Optional[int] = ..., rating: _Optional[int] = ..., has_review: _Optional[bool] = ..., voted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., traceparent: _Optional[str] = ...) -> None: ...
