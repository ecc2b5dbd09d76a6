"""Hypothesis strategies for arbitrary protobuf requests, and the in-process manager they are sent to.

Messages are built from their descriptors: every field gets values of its type, with the edges that
break naive code (empty, huge, NUL, '..', negative, NaN, unknown enum numbers, deep nesting).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc import aio
from hypothesis import strategies as st

from common.tls import channel_credentials, server_credentials
from manager.authz import Role
from manager.config import ManagerConfig
from manager.core import ClusterManager
from manager.main import bootstrap_credentials
from manager.server import bind, build_server
from manager.store import Store
from tests.harness import Trust, free_port

EDGE_STRINGS = ["", "/", "..", "../../etc", "/data/mounts/x", "/data/project", "/data/mounts/x/../y", "node-a",
                "root", "manager", "\x00", "a" * 300, "ünï", "💥", " ", "/data/mounts/" + "d" * 250]
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31), 50, 51]))
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1, -(2**63)]))
UINT32 = st.integers(0, 2**32 - 1)
UINT64 = st.integers(0, 2**64 - 1)
DOUBLES = st.floats(allow_nan=True, allow_infinity=True)
TEXT = st.one_of(st.sampled_from(EDGE_STRINGS), st.text(max_size=40))

_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_STRING: TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_DOUBLE: DOUBLES,
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    FieldDescriptor.TYPE_INT32: INT32, FieldDescriptor.TYPE_SINT32: INT32, FieldDescriptor.TYPE_SFIXED32: INT32,
    FieldDescriptor.TYPE_INT64: INT64, FieldDescriptor.TYPE_SINT64: INT64, FieldDescriptor.TYPE_SFIXED64: INT64,
    FieldDescriptor.TYPE_UINT32: UINT32, FieldDescriptor.TYPE_FIXED32: UINT32,
    FieldDescriptor.TYPE_UINT64: UINT64, FieldDescriptor.TYPE_FIXED64: UINT64,
    # Open enums: any int32 may arrive on the wire; unknown numbers must be INVALID_ARGUMENT, not a crash.
    FieldDescriptor.TYPE_ENUM: st.integers(-3, 9),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _SCALARS[field.type]


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    from google.protobuf import message_factory

    msg = message_factory.GetMessageClass(descriptor)()
    if depth > 3:
        return msg
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name
            key_field, value_field = entry["key"], entry["value"]
            for key, value in draw(st.dictionaries(_value(key_field, depth), _value(value_field, depth),
                                                   max_size=3)).items():
                if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(msg, field.name)[key].CopyFrom(value)
                else:
                    getattr(msg, field.name)[key] = value
        elif field.is_repeated:
            values = draw(st.lists(_value(field, depth), max_size=4))
            container = getattr(msg, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for value in values:
                    container.add().CopyFrom(value)
            else:
                container.extend(values)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    return _message(descriptor, depth)


@dataclass
class InProcessManager:
    """A real ClusterManager behind the real server (interceptors, TLS) on a loopback port of this process."""

    manager: ClusterManager
    server: aio.Server
    address: str
    trust: Trust
    admin_credential: str
    member_credential: str

    def channel(self) -> aio.Channel:
        return aio.secure_channel(self.address, channel_credentials(self.trust.ca),
                                  options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)])

    def restore_admin(self) -> None:
        """Fuzzed RemoveUser/AddUser may hit root: put root's credential back between batches."""
        self.manager.credentials.install_user("root", Role.ADMINISTRATOR, self.admin_credential, "fuzz")


@contextlib.asynccontextmanager
async def in_process_manager(root: Path) -> AsyncIterator[InProcessManager]:
    trust = Trust.create(root)
    data = root / "data"
    (data / "mounts").mkdir(parents=True)
    (data / "project").mkdir()
    port = free_port()
    config = ManagerConfig(listen=(f"127.0.0.1:{port}",), db=root / "state.db", sge=False, provider="none",
                           data_root=data, tls_cert_file=trust.tls_dir / "manager.crt",
                           tls_key_file=trust.tls_dir / "manager.key", tls_ca_file=trust.ca,
                           host_agent_credential_file=trust.host_agent_credential,
                           admin_credential_file=trust.admin_credential, command_timeout_s=1.0, hard_limit=50)
    store = Store(config.db)
    manager = ClusterManager(config, store)
    bootstrap_credentials(manager)
    # One enrolled member whose credential the agent-side fuzzing uses.
    manager.registry.request("fuzz-member", "fuzz-member", "127.0.0.1", "fuzz", "enrolled for fuzzing")
    (token,) = manager.credentials.issue_join_tokens(1, member_id="fuzz-member")
    _, member_credential = manager.credentials.redeem_join_token(token)
    server, _health = build_server(manager, config.max_message_bytes, config.rpc_limit)
    bind(server, config.listen, server_credentials(config.tls_cert_file, config.tls_key_file))
    await server.start()
    try:
        yield InProcessManager(manager, server, config.listen[0], trust,
                               trust.admin_credential.read_text().strip(), member_credential)
    finally:
        await server.stop(grace=0.5)
        store.close()


__all__ = ["InProcessManager", "in_process_manager", "messages"]
