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

class Vote(_message.Message):
    __slots__ = ("agent_id", "item_type", "item_id", "vote", "comment", "rating", "timestamp")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    item_type: str
    item_id: str
    vote: str
    comment: str
    rating: int
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, agent_id: _Optional[str] = ..., item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., vote: _Optional[str] = ..., comment: _Optional[str] = ..., rating: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CastVoteRequest(_message.Message):
    __slots__ = ("item_type", "item_id", "vote", "comment", "rating", "agent_id")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    vote: str
    comment: str
    rating: int
    agent_id: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., vote: _Optional[str] = ..., comment: _Optional[str] = ..., rating: _Optional[int] = ..., agent_id: _Optional[str] = ...) -> None: ...

class CastVoteResponse(_message.Message):
    __slots__ = ("status", "message", "vote", "up_votes", "down_votes", "score")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    vote: Vote
    up_votes: int
    down_votes: int
    score: int
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ..., vote: _Optional[_Union[Vote, _Mapping]] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ...) -> None: ...

class BatchCastVotesRequest(_message.Message):
    __slots__ = ("votes",)
    VOTES_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[CastVoteRequest]
    def __init__(self, votes: _Optional[_Iterable[_Union[CastVoteRequest, _Mapping]]] = ...) -> None: ...

class BatchCastVotesResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[VoteResult]
    def __init__(self, results: _Optional[_Iterable[_Union[VoteResult, _Mapping]]] = ...) -> None: ...

class VoteResult(_message.Message):
    __slots__ = ("item_type", "item_id", "status", "code", "message", "up_votes", "down_votes", "score", "vote")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    status: str
    code: int
    message: str
    up_votes: int
    down_votes: int
    score: int
    vote: Vote
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., status: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ..., vote: _Optional[_Union[Vote, _Mapping]] = ...) -> None: ...

class RetractVoteRequest(_message.Message):
    __slots__ = ("item_type", "item_id")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class RetractVoteResponse(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetVoteCountsRequest(_message.Message):
    __slots__ = ("item_type", "item_id")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class GetVoteCountsResponse(_message.Message):
    __slots__ = ("item_type", "item_id", "up_votes", "down_votes", "score")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    up_votes: int
    down_votes: int
    score: int
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ...) -> None: ...

class ListReviewsRequest(_message.Message):
    __slots__ = ("item_type", "item_id", "page_size", "page_token")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    page_size: int
    page_token: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListReviewsResponse(_message.Message):
    __slots__ = ("votes", "next_page_token")
    VOTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    next_page_token: str
    def __init__(self, votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListAgentVotesRequest(_message.Message):
    __slots__ = ("agent_id", "page_size", "page_token")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    page_size: int
    page_token: str
    def __init__(self, agent_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentVotesResponse(_message.Message):
    __slots__ = ("votes", "next_page_token")
    VOTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    next_page_token: str
    def __init__(self, votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchVotesRequest(_message.Message):
    __slots__ = ("item_type", "item_id", "after_event_id")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    after_event_id: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class WatchVotesResponse(_message.Message):
    __slots__ = ("type", "item_type", "item_id", "agent_id", "vote", "up_votes", "down_votes", "score", "timestamp", "event_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    type: str
    item_type: str
    item_id: str
    agent_id: str
    vote: str
    up_votes: int
    down_votes: int
    score: int
    timestamp: _timestamp_pb2.Timestamp
    event_id: str
    def __init__(self, type: _Optional[str] = ..., item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., vote: _Optional[str] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., score: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_id: _Optional[str] = ...) -> None: ...
