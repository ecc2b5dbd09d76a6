from protos.bench.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("member_id", "credential")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    credential: str
    def __init__(self, member_id: _Optional[str] = ..., credential: _Optional[str] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "hostname", "ip", "agent_version", "capacity", "role")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    ip: str
    agent_version: str
    capacity: _types_pb2.Capacity
    role: str
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., ip: _Optional[str] = ..., agent_version: _Optional[str] = ..., capacity: _Optional[_Union[_types_pb2.Capacity, _Mapping]] = ..., role: _Optional[str] = ...) -> None: ...

class Registration(_message.Message):
    __slots__ = ("member_id", "cluster_id", "heartbeat_interval_ms", "mounts", "dynamic", "restrictions")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_FIELD_NUMBER: _ClassVar[int]
    RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    cluster_id: str
    heartbeat_interval_ms: int
    mounts: _containers.RepeatedCompositeFieldContainer[_types_pb2.MountSpec]
    dynamic: bool
    restrictions: WorkspaceRestrictions
    def __init__(self, member_id: _Optional[str] = ..., cluster_id: _Optional[str] = ..., heartbeat_interval_ms: _Optional[int] = ..., mounts: _Optional[_Iterable[_Union[_types_pb2.MountSpec, _Mapping]]] = ..., dynamic: _Optional[bool] = ..., restrictions: _Optional[_Union[WorkspaceRestrictions, _Mapping]] = ...) -> None: ...

class WorkspaceRestrictions(_message.Message):
    __slots__ = ("allowlist", "upload", "cluster_addresses")
    ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    allowlist: _containers.RepeatedScalarFieldContainer[str]
    upload: bool
    cluster_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allowlist: _Optional[_Iterable[str]] = ..., upload: _Optional[bool] = ..., cluster_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("capacity", "running_jobs", "mounts", "draining", "agent_version", "sent_at_unix")
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    capacity: _types_pb2.Capacity
    running_jobs: int
    mounts: _containers.RepeatedCompositeFieldContainer[_types_pb2.MountReport]
    draining: bool
    agent_version: str
    sent_at_unix: float
    def __init__(self, capacity: _Optional[_Union[_types_pb2.Capacity, _Mapping]] = ..., running_jobs: _Optional[int] = ..., mounts: _Optional[_Iterable[_Union[_types_pb2.MountReport, _Mapping]]] = ..., draining: _Optional[bool] = ..., agent_version: _Optional[str] = ..., sent_at_unix: _Optional[float] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("member_id",)
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    def __init__(self, member_id: _Optional[str] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "ok", "error_code", "message", "mount")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    ok: bool
    error_code: str
    message: str
    mount: _types_pb2.MountReport
    def __init__(self, command_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ..., mount: _Optional[_Union[_types_pb2.MountReport, _Mapping]] = ...) -> None: ...

class SpotNotice(_message.Message):
    __slots__ = ("action", "deadline_unix")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_FIELD_NUMBER: _ClassVar[int]
    action: str
    deadline_unix: float
    def __init__(self, action: _Optional[str] = ..., deadline_unix: _Optional[float] = ...) -> None: ...

class ConnectionRefused(_message.Message):
    __slots__ = ("user", "destination", "name", "reason")
    USER_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    user: str
    destination: str
    name: str
    reason: str
    def __init__(self, user: _Optional[str] = ..., destination: _Optional[str] = ..., name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("hello", "heartbeat", "result", "spot_notice", "connection_refused")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SPOT_NOTICE_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_REFUSED_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    heartbeat: Heartbeat
    result: CommandResult
    spot_notice: SpotNotice
    connection_refused: ConnectionRefused
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ..., spot_notice: _Optional[_Union[SpotNotice, _Mapping]] = ..., connection_refused: _Optional[_Union[ConnectionRefused, _Mapping]] = ...) -> None: ...

class CreateMount(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.MountSpec
    def __init__(self, spec: _Optional[_Union[_types_pb2.MountSpec, _Mapping]] = ...) -> None: ...

class DeleteMount(_message.Message):
    __slots__ = ("mount_path",)
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    mount_path: str
    def __init__(self, mount_path: _Optional[str] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class WipeScratch(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Shutdown(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SyncMounts(_message.Message):
    __slots__ = ("mounts",)
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    mounts: _containers.RepeatedCompositeFieldContainer[_types_pb2.MountSpec]
    def __init__(self, mounts: _Optional[_Iterable[_Union[_types_pb2.MountSpec, _Mapping]]] = ...) -> None: ...

class ApplyRestrictions(_message.Message):
    __slots__ = ("restrictions",)
    RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    restrictions: WorkspaceRestrictions
    def __init__(self, restrictions: _Optional[_Union[WorkspaceRestrictions, _Mapping]] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ManagerCommand(_message.Message):
    __slots__ = ("command_id", "create_mount", "delete_mount", "drain", "wipe_scratch", "shutdown", "sync_mounts", "ping", "apply_restrictions")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    CREATE_MOUNT_FIELD_NUMBER: _ClassVar[int]
    DELETE_MOUNT_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    WIPE_SCRATCH_FIELD_NUMBER: _ClassVar[int]
    SHUTDOWN_FIELD_NUMBER: _ClassVar[int]
    SYNC_MOUNTS_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    APPLY_RESTRICTIONS_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    create_mount: CreateMount
    delete_mount: DeleteMount
    drain: Drain
    wipe_scratch: WipeScratch
    shutdown: Shutdown
    sync_mounts: SyncMounts
    ping: Ping
    apply_restrictions: ApplyRestrictions
    def __init__(self, command_id: _Optional[str] = ..., create_mount: _Optional[_Union[CreateMount, _Mapping]] = ..., delete_mount: _Optional[_Union[DeleteMount, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., wipe_scratch: _Optional[_Union[WipeScratch, _Mapping]] = ..., shutdown: _Optional[_Union[Shutdown, _Mapping]] = ..., sync_mounts: _Optional[_Union[SyncMounts, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., apply_restrictions: _Optional[_Union[ApplyRestrictions, _Mapping]] = ...) -> None: ...
