"""Mount modes: the protocol's enum <-> the names users type ("read-only", "read-write").

One table for the manager, the agent and workspace-ctl. An unspecified mode is read-only, the
product's default.
"""

from __future__ import annotations

from common.mountpaths import READ_ONLY, READ_WRITE
from protos.bench.v1 import types_pb2

MODE_VALUES = {READ_ONLY: types_pb2.MOUNT_MODE_READ_ONLY, READ_WRITE: types_pb2.MOUNT_MODE_READ_WRITE}
MODE_NAMES = {**{value: name for name, value in MODE_VALUES.items()}, types_pb2.MOUNT_MODE_UNSPECIFIED: READ_ONLY}
