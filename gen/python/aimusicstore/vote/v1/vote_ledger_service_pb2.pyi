from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ItemRef(_message.Message):
    __slots__ = ("item_type", "item_id")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class CountItemVotesRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemRef]
    def __init__(self, items: _Optional[_Iterable[_Union[ItemRef, _Mapping]]] = ...) -> None: ...

class ItemVoteCounts(_message.Message):
    __slots__ = ("item_type", "item_id", "up_votes", "down_votes", "rating_sum", "rating_count", "review_count", "settled")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    UP_VOTES_FIELD_NUMBER: _ClassVar[int]
    DOWN_VOTES_FIELD_NUMBER: _ClassVar[int]
    RATING_SUM_FIELD_NUMBER: _ClassVar[int]
    RATING_COUNT_FIELD_NUMBER: _ClassVar[int]
    REVIEW_COUNT_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    up_votes: int
    down_votes: int
    rating_sum: int
    rating_count: int
    review_count: int
    settled: bool
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., up_votes: _Optional[int] = ..., down_votes: _Optional[int] = ..., rating_sum: _Optional[int] = ..., rating_count: _Optional[int] = ..., review_count: _Optional[int] = ..., settled: _Optional[bool] = ...) -> None: ...

class CountItemVotesResponse(_message.Message):
    __slots__ = ("counts",)
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    counts: _containers.RepeatedCompositeFieldContainer[ItemVoteCounts]
    def __init__(self, counts: _Optional[_Iterable[_Union[ItemVoteCounts, _Mapping]]] = ...) -> None: ...

class AgentDigest(_message.Message):
    __slots__ = ("agent_id", "digest")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    digest: str
    def __init__(self, agent_id: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class CheckAgentVotesRequest(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentDigest]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentDigest, _Mapping]]] = ...) -> None: ...

class LiveVote(_message.Message):
    __slots__ = ("item_type", "item_id", "direction", "voted_at")
    ITEM_TYPE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    VOTED_AT_FIELD_NUMBER: _ClassVar[int]
    item_type: str
    item_id: str
    direction: int
    voted_at: str
    def __init__(self, item_type: _Optional[str] = ..., item_id: _Optional[str] = ..., direction: _Optional[int] = ..., voted_at: _Optional[str] = ...) -> None: ...

class AgentVotes(_message.Message):
    __slots__ = ("agent_id", "vote_count", "digest", "settled", "votes", "votes_included")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    VOTES_INCLUDED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    vote_count: int
    digest: str
    settled: bool
    votes: _containers.RepeatedCompositeFieldContainer[LiveVote]
    votes_included: bool
    def __init__(self, agent_id: _Optional[str] = ..., vote_count: _Optional[int] = ..., digest: _Optional[str] = ..., settled: _Optional[bool] = ..., votes: _Optional[_Iterable[_Union[LiveVote, _Mapping]]] = ..., votes_included: _Optional[bool] = ...) -> None: ...

class CheckAgentVotesResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentVotes]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentVotes, _Mapping]]] = ...) -> None: ...

class ListVotersRequest(_message.Message):
    __slots__ = ("after_agent_id", "page_size")
    AFTER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    after_agent_id: str
    page_size: int
    def __init__(self, after_agent_id: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListVotersResponse(_message.Message):
    __slots__ = ("agent_ids",)
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_ids: _Optional[_Iterable[str]] = ...) -> None: ...
