"""The member's side of "members never outlive their manager": observes, asks `agent.orphan_table`
what to do, does it. Only this module does I/O; the decisions are the table's.

Its state is persisted (state_dir/orphan.json) after every move, so an agent restarted by the member's
init while orphaned resumes where it was instead of starting the manager's timeout again.

How an orphaned member stops taking jobs: members are not SGE admin hosts (a member must not be able
to reconfigure the cluster), so `qmod -d` is not available here. Instead the agent writes
/scratch/.bench-orphaned; the load sensor bench-cluster installs for every sge_execd
(benchcluster/sge_setup.py) reports it as the load value bench_orphaned=1, and the queue's
load_thresholds (bench_orphaned=1) put this member's queue instance into alarm: the scheduler sends no
new job there, running jobs go on. This needs nothing from the manager and goes away by itself
with the file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent import capacity, scratch
from agent.commands import wipe_scratch
from agent.config import AgentConfig
from agent.mounts import MountManager
from agent.node_shutdown import NodeShutdown, NodeShutdownError
from agent.orphan_table import OrphanInstruction, OrphanState, OrphanView, describe, next_instruction, step_after
from common.daemon import wait_for_stop
from common.logging import get_logger
from common.tls import write_private

log = get_logger("orphan")

POLL_S = 1.0
EXECD_SPOOL = Path("/var/spool/gridengine/execd")


@dataclass
class Persisted:
    state: OrphanState = OrphanState.ATTACHED
    adrift_since: float = 0.0
    fenced_at: float = 0.0

    @classmethod
    def load(cls, path: Path) -> Persisted:
        try:
            raw = json.loads(path.read_text())
            return cls(OrphanState(raw["state"]), float(raw["adrift_since"]), float(raw["fenced_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        data = {"state": self.state.value, "adrift_since": self.adrift_since, "fenced_at": self.fenced_at}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)


def running_tasks(hostname: str, spool: Path = EXECD_SPOOL) -> int:
    """Tasks still on this node: their sge_shepherd processes, or their directories in execd's
    active_jobs (kept until qmaster acknowledged the task's end, so waiting for both means the task's
    exit status is in SGE's accounting before the node goes)."""
    try:
        active = sum(1 for _ in (spool / hostname / "active_jobs").iterdir())
    except OSError:
        active = 0
    return max(capacity.running_jobs(), active)


class OrphanWatcher:
    def __init__(self, config: AgentConfig, mounts: MountManager, shutdown: NodeShutdown,
                 connected: Callable[[], bool], dynamic: Callable[[], bool],
                 clock: Callable[[], float] = time.time, tasks: Callable[[], int] | None = None) -> None:
        self._config = config
        self._mounts = mounts
        self._shutdown = shutdown
        self._connected = connected
        self._dynamic = dynamic
        self._clock = clock
        self._tasks = tasks or (lambda: running_tasks(capacity.node_address(config)[0]))
        self._file = config.state_dir / "orphan.json"
        self._flag = config.scratch_dir / scratch.ORPHAN_FLAG
        self.persisted = Persisted.load(self._file)
        if self.persisted.state == OrphanState.ATTACHED:
            self.persisted.adrift_since = clock()  # the manager's timeout starts with this agent at the latest
        self._last_said = ""

    async def run(self, stop: asyncio.Event) -> None:
        if self.persisted.state == OrphanState.ATTACHED:
            self._unfence()  # a flag left by a crash (or planted by a job) must not fence a healthy member
        while not stop.is_set():
            try:
                await self.step()
            except Exception:  # keep watching; the next pass retries the same instruction
                log.exception("orphan pass failed")
            await wait_for_stop(stop, POLL_S)

    async def step(self) -> OrphanInstruction | None:
        p, now = self.persisted, self._clock()
        connected = self._connected()
        if p.state == OrphanState.ATTACHED and connected:
            p.adrift_since = now  # last contact
        tasks = 0
        if p.state == OrphanState.FENCED:
            tasks = await asyncio.to_thread(self._tasks)
        view = OrphanView(state=p.state, connected=connected, dynamic=self._dynamic(), now=now,
                          adrift_since=p.adrift_since, orphan_timeout_s=self._config.orphan_timeout_s,
                          fenced_at=p.fenced_at, job_grace_s=self._config.orphan_job_grace_s, running_tasks=tasks)
        instruction = next_instruction(view)
        if instruction not in (OrphanInstruction.WAIT, None):
            await self._carry_out(instruction, view)
        new_state = step_after(p.state, instruction)
        if new_state != p.state:
            if new_state == OrphanState.FENCED:
                p.fenced_at = now
            log.warning("orphan state", state=new_state.value, was=p.state.value,
                        did=instruction.value if instruction else "-")
            p.state = new_state
            p.save(self._file)
        said = describe(OrphanView(**{**view.__dict__, "state": p.state}))
        if p.state != OrphanState.ATTACHED and said.split(";")[0] != self._last_said.split(";")[0]:
            log.warning(said)
        self._last_said = said
        return instruction

    async def _carry_out(self, instruction: OrphanInstruction, view: OrphanView) -> None:
        if instruction == OrphanInstruction.FENCE:
            write_private(self._flag, b"1\n", 0o644)
        elif instruction in (OrphanInstruction.UNFENCE, OrphanInstruction.FORGET):
            self._unfence()
        elif instruction == OrphanInstruction.STOP_JOBS:
            log.warning("orphaned: job deadline passed; the node ends with its tasks still running",
                        tasks=view.running_tasks, grace_s=self._config.orphan_job_grace_s)
        elif instruction == OrphanInstruction.WIPE:
            await self._mounts.unmount_all()
            try:
                log.warning("orphaned: " + await wipe_scratch(self._config.scratch_dir))
            except (scratch.ScratchError, OSError) as exc:
                # The node ends regardless: a member kept alive for its scratch would be the leak.
                log.error("orphaned: /scratch not wiped; ending the node anyway", error=str(exc))
        elif instruction == OrphanInstruction.SHUT_DOWN:
            away = self._clock() - self.persisted.adrift_since
            try:
                self._shutdown.shut_down(f"manager unreachable for {away:.0f}s "
                                         f"(orphan_timeout_s={self._config.orphan_timeout_s:.0f})")
            except NodeShutdownError:
                log.exception("orphaned: node shutdown failed; retrying")
                raise

    def _unfence(self) -> None:
        try:
            self._flag.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the orphan flag", path=str(self._flag), error=str(exc))
