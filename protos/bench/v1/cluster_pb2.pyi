from protos.bench.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_VIEWER: _ClassVar[Role]
    ROLE_CONTRIBUTOR: _ClassVar[Role]
    ROLE_ADMINISTRATOR: _ClassVar[Role]
ROLE_UNSPECIFIED: Role
ROLE_VIEWER: Role
ROLE_CONTRIBUTOR: Role
ROLE_ADMINISTRATOR: Role

class GetWebAccessRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetWebAccessRequest(_message.Message):
    __slots__ = ("enabled",)
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    def __init__(self, enabled: _Optional[bool] = ...) -> None: ...

class WebAccessStatus(_message.Message):
    __slots__ = ("enabled", "base_url", "listening", "sessions", "message")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    LISTENING_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    base_url: str
    listening: _containers.RepeatedScalarFieldContainer[str]
    sessions: int
    message: str
    def __init__(self, enabled: _Optional[bool] = ..., base_url: _Optional[str] = ..., listening: _Optional[_Iterable[str]] = ..., sessions: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class WebAccessLoginLinkRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WebAccessLoginLinkResponse(_message.Message):
    __slots__ = ("url", "expires_at_unix")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    url: str
    expires_at_unix: float
    def __init__(self, url: _Optional[str] = ..., expires_at_unix: _Optional[float] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "role", "created_at_unix", "created_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    created_at_unix: float
    created_by: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., created_at_unix: _Optional[float] = ..., created_by: _Optional[str] = ...) -> None: ...

class AddUserRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class AddUserResponse(_message.Message):
    __slots__ = ("user", "credential")
    USER_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    user: User
    credential: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., credential: _Optional[str] = ...) -> None: ...

class ListUsersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUsersResponse(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[User]
    def __init__(self, users: _Optional[_Iterable[_Union[User, _Mapping]]] = ...) -> None: ...

class RemoveUserRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RemoveUserResponse(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class AddNodeRequest(_message.Message):
    __slots__ = ("node_id", "hostname", "ip")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    hostname: str
    ip: str
    def __init__(self, node_id: _Optional[str] = ..., hostname: _Optional[str] = ..., ip: _Optional[str] = ...) -> None: ...

class AddNodeResponse(_message.Message):
    __slots__ = ("node_id", "join_token", "expires_at_unix")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    join_token: str
    expires_at_unix: float
    def __init__(self, node_id: _Optional[str] = ..., join_token: _Optional[str] = ..., expires_at_unix: _Optional[float] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: Role
    def __init__(self, name: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScalingPolicy(_message.Message):
    __slots__ = ("mode", "static_members", "min_members", "max_members")
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATIC_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MIN_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    mode: str
    static_members: int
    min_members: int
    max_members: int
    def __init__(self, mode: _Optional[str] = ..., static_members: _Optional[int] = ..., min_members: _Optional[int] = ..., max_members: _Optional[int] = ...) -> None: ...

class ScalerDecision(_message.Message):
    __slots__ = ("decision_id", "at_unix", "action", "count", "member_ids", "reason")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    decision_id: int
    at_unix: float
    action: str
    count: int
    member_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, decision_id: _Optional[int] = ..., at_unix: _Optional[float] = ..., action: _Optional[str] = ..., count: _Optional[int] = ..., member_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("cluster_id", "state", "policy", "members_by_state", "total_cores", "total_memory_bytes", "usable_cores", "running_jobs", "last_decision", "scaler_brake", "manager_version", "pending_tasks", "operation_in_flight", "spark", "web_access_url")
    class MembersByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_CORES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USABLE_CORES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    LAST_DECISION_FIELD_NUMBER: _ClassVar[int]
    SCALER_BRAKE_FIELD_NUMBER: _ClassVar[int]
    MANAGER_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_TASKS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    SPARK_FIELD_NUMBER: _ClassVar[int]
    WEB_ACCESS_URL_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    state: str
    policy: ScalingPolicy
    members_by_state: _containers.ScalarMap[str, int]
    total_cores: int
    total_memory_bytes: int
    usable_cores: int
    running_jobs: int
    last_decision: ScalerDecision
    scaler_brake: str
    manager_version: str
    pending_tasks: int
    operation_in_flight: str
    spark: SparkStatus
    web_access_url: str
    def __init__(self, cluster_id: _Optional[str] = ..., state: _Optional[str] = ..., policy: _Optional[_Union[ScalingPolicy, _Mapping]] = ..., members_by_state: _Optional[_Mapping[str, int]] = ..., total_cores: _Optional[int] = ..., total_memory_bytes: _Optional[int] = ..., usable_cores: _Optional[int] = ..., running_jobs: _Optional[int] = ..., last_decision: _Optional[_Union[ScalerDecision, _Mapping]] = ..., scaler_brake: _Optional[str] = ..., manager_version: _Optional[str] = ..., pending_tasks: _Optional[int] = ..., operation_in_flight: _Optional[str] = ..., spark: _Optional[_Union[SparkStatus, _Mapping]] = ..., web_access_url: _Optional[str] = ...) -> None: ...

class SparkApp(_message.Message):
    __slots__ = ("app_id", "name", "user", "state", "cores_granted", "wants")
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CORES_GRANTED_FIELD_NUMBER: _ClassVar[int]
    WANTS_FIELD_NUMBER: _ClassVar[int]
    app_id: str
    name: str
    user: str
    state: str
    cores_granted: int
    wants: str
    def __init__(self, app_id: _Optional[str] = ..., name: _Optional[str] = ..., user: _Optional[str] = ..., state: _Optional[str] = ..., cores_granted: _Optional[int] = ..., wants: _Optional[str] = ...) -> None: ...

class SparkStatus(_message.Message):
    __slots__ = ("enabled", "master_url", "ui_url", "master_status", "alive_workers", "cores", "cores_used", "apps", "error")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MASTER_URL_FIELD_NUMBER: _ClassVar[int]
    UI_URL_FIELD_NUMBER: _ClassVar[int]
    MASTER_STATUS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    CORES_USED_FIELD_NUMBER: _ClassVar[int]
    APPS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    master_url: str
    ui_url: str
    master_status: str
    alive_workers: int
    cores: int
    cores_used: int
    apps: _containers.RepeatedCompositeFieldContainer[SparkApp]
    error: str
    def __init__(self, enabled: _Optional[bool] = ..., master_url: _Optional[str] = ..., ui_url: _Optional[str] = ..., master_status: _Optional[str] = ..., alive_workers: _Optional[int] = ..., cores: _Optional[int] = ..., cores_used: _Optional[int] = ..., apps: _Optional[_Iterable[_Union[SparkApp, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class SparkMember(_message.Message):
    __slots__ = ("workers", "executors", "cores", "cores_used")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    CORES_FIELD_NUMBER: _ClassVar[int]
    CORES_USED_FIELD_NUMBER: _ClassVar[int]
    workers: int
    executors: int
    cores: int
    cores_used: int
    def __init__(self, workers: _Optional[int] = ..., executors: _Optional[int] = ..., cores: _Optional[int] = ..., cores_used: _Optional[int] = ...) -> None: ...

class ListMembersRequest(_message.Message):
    __slots__ = ("member_id", "include_history")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    include_history: bool
    def __init__(self, member_id: _Optional[str] = ..., include_history: _Optional[bool] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "hostname", "ip", "state", "state_since_unix", "capacity", "last_heartbeat_unix", "running_jobs", "mounts", "drain_step", "drain_progress", "history", "agent_version", "joined_at_unix", "role", "spark")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_UNIX_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_STEP_FIELD_NUMBER: _ClassVar[int]
    DRAIN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    JOINED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SPARK_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    hostname: str
    ip: str
    state: str
    state_since_unix: float
    capacity: _types_pb2.Capacity
    last_heartbeat_unix: float
    running_jobs: int
    mounts: _containers.RepeatedCompositeFieldContainer[_types_pb2.MountReport]
    drain_step: str
    drain_progress: str
    history: _containers.RepeatedCompositeFieldContainer[_types_pb2.Transition]
    agent_version: str
    joined_at_unix: float
    role: str
    spark: SparkMember
    def __init__(self, member_id: _Optional[str] = ..., hostname: _Optional[str] = ..., ip: _Optional[str] = ..., state: _Optional[str] = ..., state_since_unix: _Optional[float] = ..., capacity: _Optional[_Union[_types_pb2.Capacity, _Mapping]] = ..., last_heartbeat_unix: _Optional[float] = ..., running_jobs: _Optional[int] = ..., mounts: _Optional[_Iterable[_Union[_types_pb2.MountReport, _Mapping]]] = ..., drain_step: _Optional[str] = ..., drain_progress: _Optional[str] = ..., history: _Optional[_Iterable[_Union[_types_pb2.Transition, _Mapping]]] = ..., agent_version: _Optional[str] = ..., joined_at_unix: _Optional[float] = ..., role: _Optional[str] = ..., spark: _Optional[_Union[SparkMember, _Mapping]] = ...) -> None: ...

class ListMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class ScaleRequest(_message.Message):
    __slots__ = ("static_members", "dynamic")
    STATIC_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    DYNAMIC_FIELD_NUMBER: _ClassVar[int]
    static_members: int
    dynamic: DynamicRange
    def __init__(self, static_members: _Optional[int] = ..., dynamic: _Optional[_Union[DynamicRange, _Mapping]] = ...) -> None: ...

class DynamicRange(_message.Message):
    __slots__ = ("min_members", "max_members")
    MIN_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MAX_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    min_members: int
    max_members: int
    def __init__(self, min_members: _Optional[int] = ..., max_members: _Optional[int] = ...) -> None: ...

class ScaleResponse(_message.Message):
    __slots__ = ("policy", "message")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    policy: ScalingPolicy
    message: str
    def __init__(self, policy: _Optional[_Union[ScalingPolicy, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class DrainMemberRequest(_message.Message):
    __slots__ = ("member_id", "deadline_s")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    deadline_s: int
    def __init__(self, member_id: _Optional[str] = ..., deadline_s: _Optional[int] = ...) -> None: ...

class DrainMemberResponse(_message.Message):
    __slots__ = ("member", "message")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    member: Member
    message: str
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class StartClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StopClusterRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateMountRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.MountSpec
    def __init__(self, spec: _Optional[_Union[_types_pb2.MountSpec, _Mapping]] = ...) -> None: ...

class DeleteMountRequest(_message.Message):
    __slots__ = ("mount_path",)
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    mount_path: str
    def __init__(self, mount_path: _Optional[str] = ...) -> None: ...

class NodeResult(_message.Message):
    __slots__ = ("member_id", "ok", "error_code", "message")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    ok: bool
    error_code: str
    message: str
    def __init__(self, member_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error_code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class MountOperationResponse(_message.Message):
    __slots__ = ("spec", "results", "message")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.MountSpec
    results: _containers.RepeatedCompositeFieldContainer[NodeResult]
    message: str
    def __init__(self, spec: _Optional[_Union[_types_pb2.MountSpec, _Mapping]] = ..., results: _Optional[_Iterable[_Union[NodeResult, _Mapping]]] = ..., message: _Optional[str] = ...) -> None: ...

class GetMountsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeMountState(_message.Message):
    __slots__ = ("member_id", "state", "bytes_read", "errors", "message")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    state: str
    bytes_read: int
    errors: int
    message: str
    def __init__(self, member_id: _Optional[str] = ..., state: _Optional[str] = ..., bytes_read: _Optional[int] = ..., errors: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class MountStatus(_message.Message):
    __slots__ = ("spec", "nodes")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    spec: _types_pb2.MountSpec
    nodes: _containers.RepeatedCompositeFieldContainer[NodeMountState]
    def __init__(self, spec: _Optional[_Union[_types_pb2.MountSpec, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodeMountState, _Mapping]]] = ...) -> None: ...

class GetMountsResponse(_message.Message):
    __slots__ = ("mounts",)
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    mounts: _containers.RepeatedCompositeFieldContainer[MountStatus]
    def __init__(self, mounts: _Optional[_Iterable[_Union[MountStatus, _Mapping]]] = ...) -> None: ...

class GetScalerLogRequest(_message.Message):
    __slots__ = ("tail",)
    TAIL_FIELD_NUMBER: _ClassVar[int]
    tail: int
    def __init__(self, tail: _Optional[int] = ...) -> None: ...

class GetScalerLogResponse(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, lines: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterEvent(_message.Message):
    __slots__ = ("at_unix", "kind", "member_id", "message", "transition")
    AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    at_unix: float
    kind: str
    member_id: str
    message: str
    transition: _types_pb2.Transition
    def __init__(self, at_unix: _Optional[float] = ..., kind: _Optional[str] = ..., member_id: _Optional[str] = ..., message: _Optional[str] = ..., transition: _Optional[_Union[_types_pb2.Transition, _Mapping]] = ...) -> None: ...

class WorkspaceSettings(_message.Message):
    __slots__ = ("allowlist", "upload", "changed_at_unix", "changed_by")
    ALLOWLIST_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    allowlist: _containers.RepeatedScalarFieldContainer[str]
    upload: bool
    changed_at_unix: float
    changed_by: str
    def __init__(self, allowlist: _Optional[_Iterable[str]] = ..., upload: _Optional[bool] = ..., changed_at_unix: _Optional[float] = ..., changed_by: _Optional[str] = ...) -> None: ...

class GetWorkspaceSettingsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkspaceSettingsResponse(_message.Message):
    __slots__ = ("in_force", "pending", "has_pending", "message")
    IN_FORCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    HAS_PENDING_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    in_force: WorkspaceSettings
    pending: WorkspaceSettings
    has_pending: bool
    message: str
    def __init__(self, in_force: _Optional[_Union[WorkspaceSettings, _Mapping]] = ..., pending: _Optional[_Union[WorkspaceSettings, _Mapping]] = ..., has_pending: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class SetAllowlistRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[str]] = ...) -> None: ...

class AllowedUrlRequest(_message.Message):
    __slots__ = ("url",)
    URL_FIELD_NUMBER: _ClassVar[int]
    url: str
    def __init__(self, url: _Optional[str] = ...) -> None: ...

class SetWorkspaceRightsRequest(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: bool
    def __init__(self, upload: _Optional[bool] = ...) -> None: ...

class QueryActivityRequest(_message.Message):
    __slots__ = ("since_unix", "user", "action", "limit")
    SINCE_UNIX_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_unix: float
    user: str
    action: str
    limit: int
    def __init__(self, since_unix: _Optional[float] = ..., user: _Optional[str] = ..., action: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class QueryActivityResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[str]] = ...) -> None: ...
