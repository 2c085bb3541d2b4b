from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FlagAgentRequest(_message.Message):
    __slots__ = ("agent_id", "reason")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    reason: str
    def __init__(self, agent_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FlagAgentResponse(_message.Message):
    __slots__ = ("newly_flagged",)
    NEWLY_FLAGGED_FIELD_NUMBER: _ClassVar[int]
    newly_flagged: bool
    def __init__(self, newly_flagged: _Optional[bool] = ...) -> None: ...
