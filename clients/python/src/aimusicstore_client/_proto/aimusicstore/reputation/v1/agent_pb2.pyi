import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Agent(_message.Message):
    __slots__ = ("id", "name", "tier", "reputation_score", "vote_count", "created_at", "last_vote_at", "flagged", "flag_reason", "standing", "weight")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    REPUTATION_SCORE_FIELD_NUMBER: _ClassVar[int]
    VOTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_VOTE_AT_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    FLAG_REASON_FIELD_NUMBER: _ClassVar[int]
    STANDING_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    tier: str
    reputation_score: int
    vote_count: int
    created_at: _timestamp_pb2.Timestamp
    last_vote_at: _timestamp_pb2.Timestamp
    flagged: bool
    flag_reason: str
    standing: str
    weight: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., tier: _Optional[str] = ..., reputation_score: _Optional[int] = ..., vote_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_vote_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., flagged: _Optional[bool] = ..., flag_reason: _Optional[str] = ..., standing: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...
