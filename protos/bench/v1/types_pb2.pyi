from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MountMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MOUNT_MODE_UNSPECIFIED: _ClassVar[MountMode]
    MOUNT_MODE_READ_ONLY: _ClassVar[MountMode]
    MOUNT_MODE_READ_WRITE: _ClassVar[MountMode]
MOUNT_MODE_UNSPECIFIED: MountMode
MOUNT_MODE_READ_ONLY: MountMode
MOUNT_MODE_READ_WRITE: MountMode

class Capacity(_message.Message):
    __slots__ = ("cores", "memory_bytes", "scratch_total_bytes", "scratch_free_bytes", "load1")
    CORES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCRATCH_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCRATCH_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    cores: int
    memory_bytes: int
    scratch_total_bytes: int
    scratch_free_bytes: int
    load1: float
    def __init__(self, cores: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., scratch_total_bytes: _Optional[int] = ..., scratch_free_bytes: _Optional[int] = ..., load1: _Optional[float] = ...) -> None: ...

class MountSpec(_message.Message):
    __slots__ = ("mount_path", "source", "mode")
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    mount_path: str
    source: str
    mode: MountMode
    def __init__(self, mount_path: _Optional[str] = ..., source: _Optional[str] = ..., mode: _Optional[_Union[MountMode, str]] = ...) -> None: ...

class MountReport(_message.Message):
    __slots__ = ("spec", "state", "bytes_read", "errors", "message")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    spec: MountSpec
    state: str
    bytes_read: int
    errors: int
    message: str
    def __init__(self, spec: _Optional[_Union[MountSpec, _Mapping]] = ..., state: _Optional[str] = ..., bytes_read: _Optional[int] = ..., errors: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("from_state", "to_state", "at_unix", "stimulus", "reason")
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    STIMULUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    from_state: str
    to_state: str
    at_unix: float
    stimulus: str
    reason: str
    def __init__(self, from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., at_unix: _Optional[float] = ..., stimulus: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
