"""Live agent sessions: the command queue of each connected agent and the results awaited.

Commands carry an id; the agent acknowledges each with a result. Re-sending a command with the same
id is safe (agents answer a repeated id from their result cache), which is how a command survives a
reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field

from protos.bench.v1 import agent_pb2


class AgentUnavailable(Exception):
    pass


class SessionBusy(Exception):
    """The member already has a live stream; a second one is refused, never allowed to take over."""


@dataclass
class AgentSession:
    member_id: str
    # None is a wake-up, not a command: the stream's writer then looks at why (closed, reader ended).
    # One queue to wait on keeps the writer at one await per command (no helper tasks).
    outbox: asyncio.Queue[agent_pb2.ManagerCommand | None] = field(default_factory=asyncio.Queue)
    pending: dict[str, asyncio.Future[agent_pb2.CommandResult]] = field(default_factory=dict)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.outbox.put_nowait(None)

    def close(self) -> None:
        self.closed.set()
        self.wake()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(AgentUnavailable(f"agent {self.member_id} disconnected"))
        self.pending.clear()


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[str, AgentSession] = {}
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def attach(self, member_id: str) -> AgentSession:
        """A stream for the member, unless it has a live one: then SessionBusy. An agent that really
        reconnected finds its old stream gone (gRPC ends it with the connection, keepalive catches a
        silent peer) and gets in on its next retry."""
        old = self._sessions.get(member_id)
        if old is not None and not old.closed.is_set():
            raise SessionBusy(f"member {member_id} already has a live stream")
        session = AgentSession(member_id)
        self._sessions[member_id] = session
        return session

    def detach(self, session: AgentSession) -> None:
        session.close()
        if self._sessions.get(session.member_id) is session:
            del self._sessions[session.member_id]

    def connected(self, member_id: str) -> bool:
        return member_id in self._sessions

    def connected_ids(self) -> list[str]:
        return list(self._sessions)

    def new_command_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    async def send(self, member_id: str, command: agent_pb2.ManagerCommand,
                   timeout_s: float) -> agent_pb2.CommandResult:
        """Queue `command` to the member's agent and wait for its acknowledged result."""
        session = self._sessions.get(member_id)
        if session is None:
            raise AgentUnavailable(f"agent {member_id} is not connected")
        if not command.command_id:
            command.command_id = self.new_command_id()
        future: asyncio.Future[agent_pb2.CommandResult] = asyncio.get_running_loop().create_future()
        session.pending[command.command_id] = future
        session.outbox.put_nowait(command)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise AgentUnavailable(
                f"agent {member_id} did not answer command {command.command_id} within {timeout_s:.0f}s") from None
        finally:
            session.pending.pop(command.command_id, None)

    def resolve(self, member_id: str, result: agent_pb2.CommandResult) -> None:
        session = self._sessions.get(member_id)
        if session is None:
            return
        future = session.pending.get(result.command_id)
        if future is not None and not future.done():
            future.set_result(result)

    def close(self, member_id: str) -> None:
        """End the member's stream (its credential was revoked)."""
        session = self._sessions.get(member_id)
        if session is not None:
            self.detach(session)

    def close_all(self) -> None:
        for session in list(self._sessions.values()):
            self.detach(session)
