from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Level(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEVEL_UNSPECIFIED: _ClassVar[Level]
    LEVEL_TRACE: _ClassVar[Level]
    LEVEL_DEBUG: _ClassVar[Level]
    LEVEL_INFO: _ClassVar[Level]
    LEVEL_WARN: _ClassVar[Level]
    LEVEL_ERROR: _ClassVar[Level]
    LEVEL_FATAL: _ClassVar[Level]
LEVEL_UNSPECIFIED: Level
LEVEL_TRACE: Level
LEVEL_DEBUG: Level
LEVEL_INFO: Level
LEVEL_WARN: Level
LEVEL_ERROR: Level
LEVEL_FATAL: Level

class LogRecord(_message.Message):
    __slots__ = ("time", "service", "node", "level", "message", "attributes", "trace_id", "span_id", "id", "received_time", "gateway", "principal")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_TIME_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    service: str
    node: str
    level: Level
    message: str
    attributes: _containers.ScalarMap[str, str]
    trace_id: str
    span_id: str
    id: str
    received_time: _timestamp_pb2.Timestamp
    gateway: str
    principal: str
    def __init__(self, time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., service: _Optional[str] = ..., node: _Optional[str] = ..., level: _Optional[_Union[Level, str]] = ..., message: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., id: _Optional[str] = ..., received_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., gateway: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: LogRecord
    def __init__(self, record: _Optional[_Union[LogRecord, _Mapping]] = ...) -> None: ...

class LogResponse(_message.Message):
    __slots__ = ("id", "spooled")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_FIELD_NUMBER: _ClassVar[int]
    id: str
    spooled: bool
    def __init__(self, id: _Optional[str] = ..., spooled: bool = ...) -> None: ...

class LogBatchRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class LogBatchResponse(_message.Message):
    __slots__ = ("ids", "spooled")
    IDS_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    spooled: bool
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., spooled: bool = ...) -> None: ...

class LogStreamRequest(_message.Message):
    __slots__ = ("seq", "records")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, seq: _Optional[int] = ..., records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class LogStreamResponse(_message.Message):
    __slots__ = ("seq", "ids", "error", "spooled")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SPOOLED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    error: CallError
    spooled: bool
    def __init__(self, seq: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ..., error: _Optional[_Union[CallError, _Mapping]] = ..., spooled: bool = ...) -> None: ...

class CallError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TailRequest(_message.Message):
    __slots__ = ("services", "min_level", "nodes", "trace_id", "attributes", "contains", "since", "start_time", "resume_token", "from_beginning", "history_only", "limit")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FROM_BEGINNING_FIELD_NUMBER: _ClassVar[int]
    HISTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedScalarFieldContainer[str]
    min_level: Level
    nodes: _containers.RepeatedScalarFieldContainer[str]
    trace_id: str
    attributes: _containers.ScalarMap[str, str]
    contains: str
    since: _duration_pb2.Duration
    start_time: _timestamp_pb2.Timestamp
    resume_token: str
    from_beginning: bool
    history_only: bool
    limit: int
    def __init__(self, services: _Optional[_Iterable[str]] = ..., min_level: _Optional[_Union[Level, str]] = ..., nodes: _Optional[_Iterable[str]] = ..., trace_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., contains: _Optional[str] = ..., since: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., start_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., resume_token: _Optional[str] = ..., from_beginning: bool = ..., history_only: bool = ..., limit: _Optional[int] = ...) -> None: ...

class TailResponse(_message.Message):
    __slots__ = ("record", "caught_up", "heartbeat", "gap", "resume_token")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CAUGHT_UP_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    record: LogRecord
    caught_up: CaughtUp
    heartbeat: Heartbeat
    gap: Gap
    resume_token: str
    def __init__(self, record: _Optional[_Union[LogRecord, _Mapping]] = ..., caught_up: _Optional[_Union[CaughtUp, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., gap: _Optional[_Union[Gap, _Mapping]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class CaughtUp(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("time", "head_time")
    TIME_FIELD_NUMBER: _ClassVar[int]
    HEAD_TIME_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    head_time: _timestamp_pb2.Timestamp
    def __init__(self, time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., head_time: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Gap(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
