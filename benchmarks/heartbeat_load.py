"""Simulated agents for `benchmarks/heartbeats.py`: many agent sessions on one asyncio loop. Each load
worker process (`heartbeat_workers.py`) runs one LoadGenerator over its own slice of the agents.

Each simulated agent registers once, then loops over sessions until the deadline: open a bidirectional
stream, write a Hello, write heartbeats at a fixed rate from then on, time until the first reply arrives
(the latency sample), answer every command with an ok result, and close its side after a randomised
session length.
The server's side must then end the stream with OK: only then are that session's heartbeats counted as
accepted, because the server has read (and, for bench-manager, validated and applied) every one of them
before it can end the stream. A session that ends in an error counts its heartbeats as unconfirmed.

The target (bench-manager or the echo baseline) is a small strategy object, so both are driven by
exactly the same code, rates and session pattern.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol

import grpc
from grpc import aio

from agent.session import CHANNEL_OPTIONS as AGENT_CHANNEL_OPTIONS
from common.auth import bearer
from protos.bench.v1 import agent_pb2, agent_pb2_grpc, cluster_pb2, cluster_pb2_grpc, types_pb2

REGISTER_CONCURRENCY = 64
RPC_TIMEOUT_S = 30.0
LAG_PROBE_S = 0.05
AGENT_VERSION = "heartbeat-bench"
# Every channel gets its own TCP connection (grpc would otherwise share one subchannel per target), with
# the real agent's keepalive and reconnect settings (agent/session.py), so the server sees their pings too.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [("grpc.use_local_subchannel_pool", 1), *AGENT_CHANNEL_OPTIONS]
# A failed session is retried as the real agent retries (agent/session.py: exponential backoff from 0.2 s,
# jittered, capped at its reconnect_max_s of 5 s) and, like it, never given up while the load runs.
RETRY_INITIAL_S = 0.2
RETRY_MAX_S = 5.0
RETRY_JITTER_S = 0.5
CAPACITY = types_pb2.Capacity(cores=4, memory_bytes=16 * 1024**3, scratch_total_bytes=100 * 1024**3,
                              scratch_free_bytes=90 * 1024**3, load1=0.5)


class RegistrationFailed(Exception):
    """An agent could not register, so no load phase can start; the message names the agent and why."""


class SessionFailed(Exception):
    """A session ended without the server's OK; its heartbeats are not counted as accepted."""


class Target(Protocol):
    """What differs between bench-manager and the echo baseline."""

    name: str

    async def register(self, channel: aio.Channel, index: int) -> str: ...

    async def session_start(self, channel: aio.Channel, member_id: str) -> None: ...

    def open_stream(self, channel: aio.Channel, member_id: str) -> Any: ...

    def answer(self, reply: Any) -> agent_pb2.AgentEvent | None: ...


def node_id(index: int) -> str:
    return f"hb-bench-{index:04d}"


def node_info(index: int) -> agent_pb2.NodeInfo:
    return agent_pb2.NodeInfo(node_id=node_id(index), hostname=node_id(index), ip="127.0.0.1",
                              agent_version=AGENT_VERSION, capacity=CAPACITY, role="member")


class ManagerTarget:
    """bench-manager's ManagerService, as real members reach it: an administrator enrols each agent
    (AddNode), the agent redeems its join token (Join) for its own credential, then each session
    registers (as the real agent does before every Connect) and Connects with that credential; every
    command is acknowledged ok."""

    name = "bench-manager"

    def __init__(self, admin_credential: str, name: str = "bench-manager") -> None:
        self.name = name
        self._admin = bearer(admin_credential)
        self._metadata: dict[str, tuple[tuple[str, str], ...]] = {}
        self._info: dict[str, agent_pb2.NodeInfo] = {}

    async def register(self, channel: aio.Channel, index: int) -> str:
        stub = agent_pb2_grpc.ManagerServiceStub(channel)
        enrolled = await cluster_pb2_grpc.ClusterServiceStub(channel).AddNode(
            cluster_pb2.AddNodeRequest(node_id=node_id(index), hostname=node_id(index), ip="127.0.0.1"),
            metadata=self._admin, timeout=RPC_TIMEOUT_S)
        joined = await stub.Join(agent_pb2.JoinRequest(), metadata=bearer(enrolled.join_token), timeout=RPC_TIMEOUT_S)
        metadata = bearer(joined.credential)
        info = node_info(index)
        registration = await stub.Register(info, metadata=metadata, timeout=RPC_TIMEOUT_S)
        self._metadata[registration.member_id] = metadata
        self._info[registration.member_id] = info
        return str(registration.member_id)

    async def session_start(self, channel: aio.Channel, member_id: str) -> None:
        await agent_pb2_grpc.ManagerServiceStub(channel).Register(
            self._info[member_id], metadata=self._metadata[member_id], timeout=RPC_TIMEOUT_S)

    def open_stream(self, channel: aio.Channel, member_id: str) -> Any:
        return agent_pb2_grpc.ManagerServiceStub(channel).Connect(metadata=self._metadata[member_id])

    def answer(self, reply: Any) -> agent_pb2.AgentEvent | None:
        return agent_pb2.AgentEvent(result=agent_pb2.CommandResult(command_id=reply.command_id, ok=True))


class EchoTarget:
    """The baseline: a stream that returns every message; nothing to register, nothing to answer."""

    name = "grpc.aio echo"

    def __init__(self, full_method: str, agent_token: str, unary_method: str = "") -> None:
        self._method = full_method
        self._unary_method = unary_method
        self._metadata = bearer(agent_token)  # same request size as the manager's calls; not checked

    async def register(self, channel: aio.Channel, index: int) -> str:
        # Nothing to register, but the connection (TCP and TLS handshake) is made now, as registering
        # makes the manager's agents' connections, so that neither server's load window includes it.
        await asyncio.wait_for(channel.channel_ready(), RPC_TIMEOUT_S)
        return node_id(index)

    async def session_start(self, channel: aio.Channel, member_id: str) -> None:
        """The counterpart of the agent's Register before each session: one unary call of that size."""
        if not self._unary_method:
            return
        call = channel.unary_unary(self._unary_method, request_serializer=agent_pb2.NodeInfo.SerializeToString,
                                   response_deserializer=agent_pb2.NodeInfo.FromString)
        await call(node_info(0), metadata=self._metadata, timeout=RPC_TIMEOUT_S)

    def open_stream(self, channel: aio.Channel, member_id: str) -> Any:
        call = channel.stream_stream(self._method, request_serializer=agent_pb2.AgentEvent.SerializeToString,
                                     response_deserializer=agent_pb2.AgentEvent.FromString)
        return call(metadata=self._metadata)

    def answer(self, reply: Any) -> agent_pb2.AgentEvent | None:
        return None


@dataclass
class LoadStats:
    latencies_s: list[float] = field(default_factory=list)
    # The same samples from the sessions of agents already served once (reconnects after the connect ramp):
    # the steady state, without the burst of every agent's first connect.
    later_latencies_s: list[float] = field(default_factory=list)
    heartbeats_accepted: int = 0
    heartbeats_unconfirmed: int = 0
    replies: int = 0
    sessions_ok: int = 0
    sessions_failed: int = 0
    agents_gave_up: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    # How late this process's event loop woke up: latency figures include it, for both servers alike.
    loop_lag_s: list[float] = field(default_factory=list)
    # When each failed session failed, in seconds after the load started (a burst at the start, or all along?)
    failed_at_s: list[float] = field(default_factory=list)
    started_unix: float = 0.0  # when this slice's load started: all slices start together (GO)

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in vars(self).items() if k != "errors"}, "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadStats:
        return cls(**{**data, "errors": Counter(data["errors"])})

    @classmethod
    def merged(cls, parts: list[LoadStats]) -> LoadStats:
        """The stats of several load processes as one: samples joined, counts summed."""
        total = cls()
        for part in parts:
            total.latencies_s += part.latencies_s
            total.later_latencies_s += part.later_latencies_s
            total.loop_lag_s += part.loop_lag_s
            total.failed_at_s += part.failed_at_s
            total.errors.update(part.errors)
            for name in ("heartbeats_accepted", "heartbeats_unconfirmed", "replies", "sessions_ok",
                         "sessions_failed", "agents_gave_up"):
                setattr(total, name, getattr(total, name) + getattr(part, name))
        return total


def heartbeat() -> agent_pb2.AgentEvent:
    return agent_pb2.AgentEvent(heartbeat=agent_pb2.Heartbeat(capacity=CAPACITY, agent_version=AGENT_VERSION,
                                                              sent_at_unix=time.time()))


class _Session:
    """One stream of one simulated agent."""

    def __init__(self, target: Target, channel: aio.Channel, member_id: str, stats: LoadStats,
                 later: bool = False) -> None:
        self._target = target
        self._later = later
        self._call = target.open_stream(channel, member_id)
        self._member_id = member_id
        self._stats = stats
        self._write_lock = asyncio.Lock()  # grpc.aio allows one write in flight per call
        self._closing = False
        self.heartbeats_written = 0
        self.first_reply_seen = False

    async def _write(self, event: agent_pb2.AgentEvent) -> None:
        async with self._write_lock:
            await self._call.write(event)

    async def _read_replies(self, hello_written_at: float) -> None:
        first = True
        while True:
            reply = await self._call.read()
            if reply is aio.EOF:
                return
            if first:
                sample = time.perf_counter() - hello_written_at
                self._stats.latencies_s.append(sample)
                if self._later:
                    self._stats.later_latencies_s.append(sample)
                self.first_reply_seen, first = True, False
            self._stats.replies += 1
            answer = self._target.answer(reply)
            if answer is not None and not self._closing:
                await self._write(answer)

    async def run(self, end_at: float, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            started = time.perf_counter()
            await self._write(agent_pb2.AgentEvent(hello=agent_pb2.Hello(member_id=self._member_id)))
            # As in the real agent, heartbeats do not wait for commands: the reply is timed meanwhile.
            reader = asyncio.create_task(self._read_replies(started))
            try:
                next_at = loop.time()
                while next_at < end_at and not reader.done():
                    await asyncio.sleep(max(0.0, next_at - loop.time()))
                    await self._write(heartbeat())
                    self.heartbeats_written += 1
                    # Behind schedule (an overloaded server or client) means fewer beats, never a burst.
                    next_at = max(next_at + interval_s, loop.time())
                self._closing = True
                async with self._write_lock:
                    await self._call.done_writing()
                await asyncio.wait_for(asyncio.shield(reader), RPC_TIMEOUT_S)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            code = await asyncio.wait_for(self._call.code(), RPC_TIMEOUT_S)
            if code != grpc.StatusCode.OK:
                details = await self._call.details()
                raise SessionFailed(f"{code.name}: {details}")
            if not self.first_reply_seen:
                raise SessionFailed("the stream ended without any reply to the Hello")
        except asyncio.InvalidStateError:
            # The server ended the stream while we wrote: grpc.aio raises this rather than the status.
            self._fail(SessionFailed(f"the server ended the stream: {await self._status_text()}"))
        except (aio.AioRpcError, TimeoutError, SessionFailed, aio.UsageError) as exc:
            self._fail(exc)
        self._stats.sessions_ok += 1
        self._stats.heartbeats_accepted += self.heartbeats_written

    async def _status_text(self) -> str:
        try:
            code = await asyncio.wait_for(self._call.code(), RPC_TIMEOUT_S)
            return f"{code.name}: {await self._call.details()}"
        except (TimeoutError, aio.AioRpcError) as exc:
            return str(exc)[:100]

    def _fail(self, exc: BaseException) -> NoReturn:
        self._call.cancel()
        self._stats.heartbeats_unconfirmed += self.heartbeats_written
        _count_failure(self._stats, exc)
        raise SessionFailed(str(exc)) from exc


def _count_failure(stats: LoadStats, exc: BaseException) -> None:
    stats.sessions_failed += 1
    stats.errors[_error_key(exc)] += 1
    stats.failed_at_s.append(time.time() - stats.started_unix)


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return f"{exc.code().name}: {(exc.details() or '')[:80]}"
    if isinstance(exc, TimeoutError):
        return f"no answer within {RPC_TIMEOUT_S:.0f}s"
    return str(exc)[:100]


@dataclass(frozen=True)
class LoadSettings:
    agents: int
    interval_s: float
    seconds: float
    session_s: float
    seed: int = 1
    # Real agents hold one connection each; more agents per connection (HTTP/2 streams of one TCP/TLS
    # connection) is cheaper for both sides but lets one connection's trouble fail all its agents at once.
    agents_per_connection: int = 1
    # The agents' first connects are spread uniformly over this many seconds (0: over one heartbeat
    # interval): agents booting with a scale-up arrive over minutes, agents reconnecting to a restarted
    # manager within their reconnect backoff cap (~5 s).
    ramp_s: float = 0.0


class LoadGenerator:
    """Simulated agents `first` .. `first + count - 1` (all of them by default) against one server address;
    use as an async context manager (owns the channels)."""

    def __init__(self, target: Target, make_channel: Callable[[list[tuple[str, Any]]], aio.Channel],
                 settings: LoadSettings, first: int = 0, count: int | None = None) -> None:
        self.target = target
        self.settings = settings
        self.stats = LoadStats()
        self.member_ids: dict[int, str] = {}
        self._first = first
        self._count = settings.agents if count is None else count
        channel_count = math.ceil(self._count / settings.agents_per_connection)
        self._channels = [make_channel(CHANNEL_OPTIONS) for _ in range(channel_count)]

    async def __aenter__(self) -> LoadGenerator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(channel.close(grace=None) for channel in self._channels), return_exceptions=True)

    def _channel(self, index: int) -> aio.Channel:
        return self._channels[(index - self._first) // self.settings.agents_per_connection]

    async def register_all(self) -> None:
        """Register every agent (not timed); raises if any registration fails."""
        gate = asyncio.Semaphore(REGISTER_CONCURRENCY)

        async def one(index: int) -> None:
            async with gate:
                try:
                    self.member_ids[index] = await self.target.register(self._channel(index), index)
                except aio.AioRpcError as exc:
                    raise RegistrationFailed(f"{self.target.name}: agent {node_id(index)} could not register: "
                                             f"{exc.code().name}: {exc.details()}") from exc
                except TimeoutError:
                    raise RegistrationFailed(f"{self.target.name}: agent {node_id(index)} could not connect "
                                             f"within {RPC_TIMEOUT_S:.0f}s") from None

        await asyncio.gather(*(one(i) for i in range(self._first, self._first + self._count)))

    async def drive(self) -> float:
        """Run every agent's sessions until the deadline and until each has closed; returns the seconds taken."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.started_unix = time.time()
        deadline = started + self.settings.seconds
        rng = random.Random(self.settings.seed * 1_000_003 + self._first)  # each slice its own sequence
        # First connects spread over the ramp (by default one interval), session lengths over 0.5-1.5x:
        # reconnects and beats stay staggered.
        offsets = [rng.uniform(0, self.settings.ramp_s or self.settings.interval_s) for _ in self.member_ids]
        lag_probe = asyncio.create_task(self._probe_loop_lag(deadline))
        try:
            await asyncio.gather(*(self._agent(index, member_id, started + offset, deadline,
                                               random.Random(rng.random()))
                                   for (index, member_id), offset in zip(self.member_ids.items(), offsets,
                                                                         strict=True)))
        finally:
            lag_probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_probe
        return loop.time() - started

    async def _probe_loop_lag(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            asked = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.stats.loop_lag_s.append(max(0.0, loop.time() - asked - LAG_PROBE_S))

    async def _agent(self, index: int, member_id: str, start_at: float, deadline: float,
                     rng: random.Random) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, start_at - loop.time()))
        shortest_s = 0.5 * self.settings.session_s
        failures = 0
        served = False
        while deadline - loop.time() > self.settings.interval_s:
            end_at = loop.time() + self.settings.session_s * rng.uniform(0.5, 1.5)
            if deadline - end_at < shortest_s:  # no stub sessions squeezed in just before the deadline
                end_at = deadline
            try:
                await self._one_session(index, member_id, end_at, served)
                failures, served = 0, True
            except SessionFailed:
                failures += 1
                delay = min(RETRY_MAX_S, RETRY_INITIAL_S * 2 ** (failures - 1)) + rng.uniform(0, RETRY_JITTER_S)
                if deadline - (loop.time() + delay) <= self.settings.interval_s:
                    break
                await asyncio.sleep(delay)
        if failures:
            self.stats.agents_gave_up += 1  # its sessions were still failing when the load ended

    async def _one_session(self, index: int, member_id: str, end_at: float, later: bool) -> None:
        try:
            await self.target.session_start(self._channel(index), member_id)
        except (aio.AioRpcError, TimeoutError) as exc:
            _count_failure(self.stats, exc)
            raise SessionFailed(str(exc)) from exc
        await _Session(self.target, self._channel(index), member_id, self.stats, later).run(
            end_at, self.settings.interval_s)
