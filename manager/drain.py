"""Carries out drains (scale-in, `workspace-ctl cluster drain`, cluster stop, spot interruption).

The steps and their order are data in manager.drain_table; this module only observes and does the
I/O each instruction names, persisting the member's step after every one, so a manager killed at
any point resumes the drain exactly once. Running jobs are never killed: the member waits for them,
or, past a deadline (spot notice, `--deadline`), has SGE reschedule them elsewhere.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from common.logging import get_logger
from manager.core import ClusterManager
from manager.drain_table import DrainStep, DrainView, Instruction, describe, next_instruction, step_after
from manager.lifecycle import MemberEvent, MemberState
from manager.model import MemberRecord
from manager.providers.base import NodeProvider
from manager.sessions import AgentUnavailable
from protos.bench.v1 import agent_pb2

log = get_logger("drain")

DRAINING_STATES = frozenset({MemberState.DRAINING, MemberState.INTERRUPTED, MemberState.DRAINED})
MAX_STEPS_PER_PASS = 12
# Test hook: stop advancing drains once they reach this step, so tests can kill the manager there.
HOLD_STEP_ENV = "BENCH_TEST_DRAIN_HOLD"


class DrainFailed(Exception):
    pass


class DrainExecutor:
    def __init__(self, manager: ClusterManager, sge: Any | None, provider: NodeProvider | None) -> None:
        self.manager = manager
        self.sge = sge
        self.provider = provider
        self.hold_step = os.environ.get(HOLD_STEP_ENV) or None

    async def advance_all(self, tasks_by_host: dict[str, list[tuple[int, int | None]]]) -> None:
        for member in self.manager.registry.all():
            if member.state not in DRAINING_STATES or not member.drain:
                continue
            try:
                await self.advance(member, tasks_by_host.get(member.hostname, []))
            except Exception as exc:  # one member's failed step must not block the others; retried next pass
                log.warning("drain step failed; will retry", member=member.member_id,
                            step=member.drain.get("step"), error=str(exc))
                self._save(member.member_id, progress=f"retrying after error: {exc}"[:300])

    async def advance(self, member: MemberRecord, running: list[tuple[int, int | None]]) -> None:
        registry = self.manager.registry
        for _ in range(MAX_STEPS_PER_PASS):
            member = registry.get(member.member_id) or member
            step = DrainStep(member.drain.get("step", DrainStep.START))
            if self.hold_step and step == self.hold_step:
                return
            view = DrainView(step=step, running_tasks=len(running), deadline=float(member.drain.get("deadline", 0)),
                             now=self.manager.clock(), sge=self.sge is not None and member.sge_configured,
                             agent_connected=self.manager.sessions.connected(member.member_id),
                             abort_if_busy=bool(member.drain.get("abort_if_busy")))
            instruction = next_instruction(view)
            if instruction == Instruction.WAIT_FOR_JOBS:
                self._save(member.member_id, progress=describe(step, len(running), view.deadline, view.now))
                return
            if instruction is not None:
                running = await self._carry_out(instruction, member, running)
            new_step = step_after(step, instruction)
            if new_step == step:
                self._save(member.member_id, progress=describe(step, len(running), view.deadline, view.now))
                return
            self._save(member.member_id, step=new_step.value,
                       progress=describe(new_step, len(running), view.deadline, view.now))
            log.info("drain step", member=member.member_id, step=new_step.value,
                     did=instruction.value if instruction else "-")
            if new_step in (DrainStep.DONE, DrainStep.ABORTED):
                return

    def _save(self, member_id: str, **changes: str) -> None:
        member = self.manager.registry.get(member_id)
        if member is not None and member.drain:
            self.manager.registry.update(member_id, drain={**member.drain, **changes})

    async def _carry_out(self, instruction: Instruction, member: MemberRecord,
                         running: list[tuple[int, int | None]]) -> list[tuple[int, int | None]]:
        sge, host = self.sge, member.hostname
        if instruction == Instruction.DISABLE_QUEUE:
            await sge.disable_host(host)  # type: ignore[union-attr]
            # Re-check after disabling: a job may have slipped in between the decision and qmod -d.
            return list(await sge.running_tasks_on(host))  # type: ignore[union-attr]
        if instruction == Instruction.RESCHEDULE_JOBS:
            for job_id, task_id in running:
                try:
                    await sge.reschedule(job_id, task_id)  # type: ignore[union-attr]
                except Exception as exc:  # keep going: every other task still deserves its reschedule
                    log.warning("reschedule failed", member=member.member_id, job=job_id, task=task_id,
                                error=str(exc))
            log.info("rescheduled running tasks", member=member.member_id, tasks=len(running))
            return running
        if instruction == Instruction.UNMOUNT_ALL:
            await self._agent_command(member, agent_pb2.ManagerCommand(drain=agent_pb2.Drain(reason="drain")))
        elif instruction == Instruction.WIPE_SCRATCH:
            await self._agent_command(member, agent_pb2.ManagerCommand(wipe_scratch=agent_pb2.WipeScratch()))
        elif instruction == Instruction.REMOVE_EXEC_HOST:
            await sge.remove_exec_host(host)  # type: ignore[union-attr]
        elif instruction == Instruction.COMPLETE:
            if member.state != MemberState.DRAINED:
                self.manager.registry.transition(member.member_id, MemberEvent.DRAIN_COMPLETED, "drain",
                                                 "no job left, unmounted, scratch wiped, out of SGE")
        elif instruction == Instruction.TERMINATE_NODE:
            await self._terminate(member)
        elif instruction == Instruction.REENABLE_QUEUE:
            if sge is not None and member.sge_configured:
                await sge.enable_host(host)
            self.manager.registry.transition(member.member_id, MemberEvent.DRAIN_ABORTED, "drain",
                                             "a job started on the member before it was disabled; "
                                             "scale-down cancelled, queue re-enabled")
        return running

    async def _agent_command(self, member: MemberRecord, command: agent_pb2.ManagerCommand) -> None:
        try:
            result = await self.manager.sessions.send(member.member_id, command, self.manager.config.command_timeout_s)
        except AgentUnavailable as exc:
            raise DrainFailed(str(exc)) from None
        if not result.ok:
            raise DrainFailed(f"agent refused {command.WhichOneof('command')}: {result.error_code}: {result.message}")

    async def _terminate(self, member: MemberRecord) -> None:
        if self.manager.sessions.connected(member.member_id):
            with contextlib.suppress(AgentUnavailable):  # the node goes away regardless
                await self.manager.sessions.send(member.member_id, agent_pb2.ManagerCommand(
                    shutdown=agent_pb2.Shutdown()), timeout_s=5)
        if self.provider is not None:
            await self.provider.terminate([member.member_id])
        reason = "node terminated" if self.provider else "drained (no provider to terminate)"
        self.manager.registry.transition(member.member_id, MemberEvent.NODE_TERMINATED,
                                         "provider" if self.provider else "drain",
                                         str(member.drain.get("left") or reason))
