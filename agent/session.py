"""The agent's side of the manager connection: register, then one bidirectional stream carrying
heartbeats and command results up and commands down. Reconnects on any failure with exponential
backoff and jitter, capped, forever: a node must rejoin a restarted manager without an operator.

Every channel is TLS, trusting only the cluster CA (a manager whose certificate does not chain to it
fails the handshake). At first start the member has only a one-time join token: it exchanges it
(Join) for its own credential, written with mode 0600 from the start, and never uses the token again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import grpc
from grpc import aio
from tenacity import AsyncRetrying, RetryCallState, retry_base, retry_if_exception_type, wait_exponential_jitter

from agent import capacity
from agent.commands import CommandHandler, report_to_pb
from agent.config import AgentConfig
from agent.mounts import MountManager
from agent.refusals import RefusalSpool
from agent.restrictions import RestrictionEnforcer, RestrictionError, from_pb
from common.auth import CredentialError, bearer, read_token_file
from common.daemon import wait_for_stop
from common.logging import get_logger
from common.tls import write_private
from protos.bench.v1 import agent_pb2, agent_pb2_grpc

log = get_logger("agent-session")

VERSION = "0.1.0"
REFUSALS_POLL_S = 0.5
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
# Errors that a retry cannot fix without an operator; still retried (slowly), but logged as errors.
OPERATOR_ERRORS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                   grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


class ManagerSession:
    def __init__(self, config: AgentConfig, tls: grpc.ChannelCredentials, mounts: MountManager,
                 handler: CommandHandler, restrictions: RestrictionEnforcer, refusals: RefusalSpool,
                 on_connected: Callable[[bool], None] = lambda _: None) -> None:
        self._config = config
        self._tls = tls
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._mounts = mounts
        self._handler = handler
        self._restrictions = restrictions
        self._refusals = refusals
        self._on_connected = on_connected
        self.member_id = config.node_id
        self.connected = False
        # What the manager said at the last registration (kept across agent restarts): may this member
        # end itself when orphaned? Unknown (never registered) counts as static: keep retrying.
        self._dynamic_file = config.state_dir / "dynamic"
        self.spot_notices: asyncio.Queue[agent_pb2.SpotNotice] = asyncio.Queue()

    def node_info(self) -> agent_pb2.NodeInfo:
        hostname, ip = capacity.node_address(self._config)
        # An empty node_id lets the manager take it from the credential (the member id it was issued for).
        return agent_pb2.NodeInfo(node_id=self.member_id, hostname=hostname, ip=ip,
                                  agent_version=VERSION, capacity=capacity.measure(self._config),
                                  role=self._config.role)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep a session up until `stop`. Each outage gets a fresh exponential backoff (jittered,
        capped at reconnect_max_s); attempts are unlimited on purpose — giving up would orphan the node."""
        async def sleep_unless_stopped(delay: float) -> None:
            await wait_for_stop(stop, delay)

        while not stop.is_set():
            retrying = AsyncRetrying(
                wait=wait_exponential_jitter(initial=0.2, max=self._config.reconnect_max_s, jitter=0.5),
                retry=retry_if_exception_type((aio.AioRpcError, OSError)) & retry_if_not_stopped(stop),
                sleep=sleep_unless_stopped, before_sleep=_log_retry, reraise=True)
            try:
                async for attempt in retrying:
                    with attempt:
                        async with aio.secure_channel(self._config.manager, self._tls,
                                                      options=CHANNEL_OPTIONS) as channel:
                            stub = agent_pb2_grpc.ManagerServiceStub(channel)
                            self._metadata = bearer(await self._credential(stub))
                            await self._session(stub, stop)
            except SessionDropped as exc:
                log.warning("manager session dropped; reconnecting", reason=str(exc))
            except (aio.AioRpcError, OSError):
                if not stop.is_set():
                    raise
            finally:
                self.connected = False
                self._on_connected(False)

    async def _credential(self, stub: agent_pb2_grpc.ManagerServiceStub) -> str:
        """This member's credential: from its file, or (first start) by redeeming the join token."""
        path = self._config.credential_file
        try:
            return read_token_file(path)
        except CredentialError:
            if path.exists():
                raise
        try:
            join_token = read_token_file(self._config.join_token_file)
        except CredentialError as exc:
            raise CredentialMissing(f"no credential at {path} and no join token: {exc}") from None
        response = await stub.Join(agent_pb2.JoinRequest(), metadata=bearer(join_token), timeout=10)
        if self._config.node_id and response.member_id != self._config.node_id:
            log.warning("join token names another member id than --node-id; using the manager's",
                        configured=self._config.node_id, member=response.member_id)
        write_private(path, (response.credential + "\n").encode(), 0o600)
        try:
            self._config.join_token_file.unlink(missing_ok=True)  # spent: nothing to steal any more
        except OSError as exc:
            log.warning("spent join token not removed", path=str(self._config.join_token_file), error=str(exc))
        self.member_id = response.member_id
        log.info("joined the cluster", member=response.member_id, credential=str(path))
        return response.credential

    async def _session(self, stub: agent_pb2_grpc.ManagerServiceStub, stop: asyncio.Event) -> None:
        registration = await stub.Register(self.node_info(), metadata=self._metadata, timeout=10)
        self.member_id = registration.member_id
        self._remember_dynamic(registration.dynamic)
        interval = registration.heartbeat_interval_ms / 1000 or self._config.heartbeat_interval_s
        interval = min(interval, self._config.heartbeat_interval_s)
        log.info("registered", member=self.member_id, cluster=registration.cluster_id, heartbeat_s=interval)
        # Before the first heartbeat: the manager sees this node READY only once its workspace's
        # restrictions hold here; if they cannot be applied the session is retried, never run without.
        try:
            await self._restrictions.apply(from_pb(registration.restrictions))
        except RestrictionError as exc:
            log.error("workspace restrictions cannot be applied; not joining until they can", error=str(exc))
            raise OSError(f"workspace restrictions not applied: {exc}") from exc
        outbox: asyncio.Queue[agent_pb2.AgentEvent] = asyncio.Queue()
        call = stub.Connect(metadata=self._metadata)
        await call.write(agent_pb2.AgentEvent(hello=agent_pb2.Hello(member_id=self.member_id)))
        self.connected = True
        self._on_connected(True)
        workers: set[asyncio.Task[None]] = set()

        async def heartbeats() -> None:
            while True:
                outbox.put_nowait(agent_pb2.AgentEvent(heartbeat=await self._heartbeat()))
                await asyncio.sleep(interval)

        async def writer() -> None:
            while True:
                await call.write(await outbox.get())

        async def forward_spot_notices() -> None:
            while True:
                outbox.put_nowait(agent_pb2.AgentEvent(spot_notice=await self.spot_notices.get()))

        async def forward_refusals() -> None:
            while True:
                for refused in await asyncio.to_thread(self._refusals.read_new):
                    outbox.put_nowait(agent_pb2.AgentEvent(connection_refused=refused))
                await asyncio.sleep(REFUSALS_POLL_S)

        async def run_command(command: agent_pb2.ManagerCommand) -> None:
            result = await self._handler.handle(command)
            outbox.put_nowait(agent_pb2.AgentEvent(result=result))

        async def reader() -> None:
            async for command in call:
                task = asyncio.create_task(run_command(command))
                workers.add(task)
                task.add_done_callback(workers.discard)

        tasks = [asyncio.create_task(c) for c in (heartbeats(), writer(), reader(), forward_spot_notices(),
                                                   forward_refusals(), stop.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise SessionDropped(f"{type(error).__name__}: {error}") from error
            if not stop.is_set():
                raise SessionDropped("the manager closed the stream")
        finally:
            for task in [*tasks, *workers]:
                task.cancel()
            await asyncio.gather(*tasks, *workers, return_exceptions=True)
            call.cancel()

    @property
    def dynamic(self) -> bool:
        try:
            return self._dynamic_file.read_text().strip() == "dynamic"
        except OSError:
            return False

    def _remember_dynamic(self, dynamic: bool) -> None:
        try:
            write_private(self._dynamic_file, b"dynamic\n" if dynamic else b"static\n", 0o644)
        except OSError as exc:
            log.warning("cannot record whether this member is dynamic", path=str(self._dynamic_file), error=str(exc))

    async def _heartbeat(self) -> agent_pb2.Heartbeat:
        cap, jobs = await asyncio.to_thread(lambda: (capacity.measure(self._config), capacity.running_jobs()))
        return agent_pb2.Heartbeat(capacity=cap, running_jobs=jobs,
                                   mounts=[report_to_pb(r) for r in self._mounts.reports()],
                                   draining=self._handler.draining, agent_version=VERSION,
                                   sent_at_unix=time.time())


class CredentialMissing(OSError):
    """Neither a credential nor a join token: retried (an operator may still provide one)."""


class SessionDropped(Exception):
    """An established session ended; the next outage starts a fresh backoff."""


class retry_if_not_stopped(retry_base):
    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def __call__(self, retry_state: RetryCallState) -> bool:
        return not self._stop.is_set()


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    delay = state.next_action.sleep if state.next_action else 0.0
    if isinstance(error, aio.AioRpcError):
        level = log.error if error.code() in OPERATOR_ERRORS else log.warning
        level("manager not reachable", code=error.code().name, details=error.details(),
              attempt=state.attempt_number, retry_in_s=round(delay, 2))
    else:
        log.warning("manager not reachable", error=str(error), attempt=state.attempt_number,
                    retry_in_s=round(delay, 2))
