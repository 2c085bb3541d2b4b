from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
CACHE_FIELD_NUMBER: _ClassVar[int]
cache: _descriptor.FieldDescriptor

class CacheRule(_message.Message):
    __slots__ = ("cache_control", "edge_cached")
    CACHE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    EDGE_CACHED_FIELD_NUMBER: _ClassVar[int]
    cache_control: str
    edge_cached: bool
    def __init__(self, cache_control: _Optional[str] = ..., edge_cached: _Optional[bool] = ...) -> None: ...
