"""The egress guard's refusals on their way to the manager's activity log, whatever the node.

The guard (agent/egress_guard.py) appends one JSON object a line to a spool file in the agent's state
directory; the agent reads what is new and sends each as a ConnectionRefused event on its session, so
a refusal on an EC2 instance lands in the same `/data/logs/activity.log` as one on a local member. The
read offset is kept in a file next to the spool, so an agent restart neither loses nor repeats entries;
a spool read to its end and past MAX_BYTES is removed (the guard opens it for each append, so its next
refusal starts a new one).
"""

from __future__ import annotations

import json
from pathlib import Path

from protos.bench.v1 import agent_pb2

MAX_BYTES = 1 << 20
MAX_BATCH = 200  # a burst of refusals is sent over several reads, never as one huge read


class RefusalSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset_file = path.with_name(path.name + ".offset")

    def _offset(self) -> int:
        try:
            return int(self._offset_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def read_new(self) -> list[agent_pb2.ConnectionRefused]:
        offset = self._offset()
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, 2)
                if size < offset:
                    offset = 0  # replaced since the last read
                handle.seek(offset)
                lines = []
                for _ in range(MAX_BATCH):
                    line = handle.readline()
                    if not line.endswith(b"\n"):
                        break  # not written in full yet: read next time
                    lines.append(line)
                    offset += len(line)
        except FileNotFoundError:
            return []
        events = [event for event in map(_event, lines) if event is not None]
        if offset >= size and size > MAX_BYTES:
            self.path.unlink(missing_ok=True)
            offset = 0
        self._offset_file.write_text(f"{offset}\n")
        return events


def _event(line: bytes) -> agent_pb2.ConnectionRefused | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    user = str(record.get("user", ""))
    return agent_pb2.ConnectionRefused(user="" if user == "unknown" else user,
                                       destination=str(record.get("destination", "")),
                                       name=str(record.get("name", "")), reason=str(record.get("reason", "")))
