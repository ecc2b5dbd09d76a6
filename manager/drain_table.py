"""The drain of one member as data: steps, what to do in each, and where success leads.

Pure (no I/O, no clock): the executor (manager.drain) observes, asks `next_instruction`, carries the
instruction out (every instruction is idempotent), persists the new step, and repeats. A manager
killed between any two steps therefore resumes exactly where it was, and a step done twice is
harmless.

    START → QUEUE_DISABLED → JOBS_DONE → UNMOUNTED → SCRATCH_WIPED → OUT_OF_SGE → TERMINATING → DONE
    (ABORTING → ABORTED re-enables the queue when a scale-down finds its member busy again)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DrainStep(StrEnum):
    START = "start"
    QUEUE_DISABLED = "queue-disabled"
    JOBS_DONE = "jobs-done"
    UNMOUNTED = "unmounted"
    SCRATCH_WIPED = "scratch-wiped"
    OUT_OF_SGE = "out-of-sge"
    TERMINATING = "terminating"
    DONE = "done"
    ABORTING = "aborting"
    ABORTED = "aborted"


class Instruction(StrEnum):
    DISABLE_QUEUE = "disable-queue"  # qmod -d all.q@host: no new jobs
    WAIT_FOR_JOBS = "wait-for-jobs"  # nothing to do but observe again
    RESCHEDULE_JOBS = "reschedule-jobs"  # deadline passed: qmod -rj so the jobs run elsewhere
    UNMOUNT_ALL = "unmount-all"  # agent: refuse new mounts, unmount every fast mount
    WIPE_SCRATCH = "wipe-scratch"  # agent: empty /scratch without following symlinks out
    REMOVE_EXEC_HOST = "remove-exec-host"  # qconf -de host (and its queue/hostgroup entries)
    TERMINATE_NODE = "terminate-node"  # provider terminates the node
    COMPLETE = "complete"  # record DRAINED → TERMINATED
    REENABLE_QUEUE = "reenable-queue"  # abort: qmod -e, the member is READY again


# Where each step's instruction leads once it succeeded.
ADVANCE: dict[DrainStep, DrainStep] = {
    DrainStep.START: DrainStep.QUEUE_DISABLED,
    DrainStep.QUEUE_DISABLED: DrainStep.JOBS_DONE,
    DrainStep.JOBS_DONE: DrainStep.UNMOUNTED,
    DrainStep.UNMOUNTED: DrainStep.SCRATCH_WIPED,
    DrainStep.SCRATCH_WIPED: DrainStep.OUT_OF_SGE,
    DrainStep.OUT_OF_SGE: DrainStep.TERMINATING,
    DrainStep.TERMINATING: DrainStep.DONE,
    DrainStep.ABORTING: DrainStep.ABORTED,
}


@dataclass(frozen=True)
class DrainView:
    """What the executor observed about the member, for one decision."""

    step: DrainStep
    running_tasks: int  # tasks SGE runs on the host now
    deadline: float  # 0: wait for running jobs however long they take
    now: float
    sge: bool  # the cluster uses SGE (and the host was configured in it)
    agent_connected: bool  # the member's agent can take commands
    abort_if_busy: bool  # a scale-down drain: a job that slipped in cancels it instead of waiting


def next_instruction(view: DrainView) -> Instruction | None:
    """The one thing to do now, or None when there is nothing left (DONE / ABORTED)."""
    step = view.step
    if step == DrainStep.START:
        return Instruction.DISABLE_QUEUE if view.sge else None
    if step == DrainStep.QUEUE_DISABLED:
        if view.running_tasks == 0:
            return None  # nothing runs: advance without an action
        if view.abort_if_busy:
            return Instruction.REENABLE_QUEUE
        if view.deadline and view.now >= view.deadline:
            return Instruction.RESCHEDULE_JOBS
        return Instruction.WAIT_FOR_JOBS
    if step == DrainStep.JOBS_DONE:
        return Instruction.UNMOUNT_ALL if view.agent_connected else None
    if step == DrainStep.UNMOUNTED:
        return Instruction.WIPE_SCRATCH if view.agent_connected else None
    if step == DrainStep.SCRATCH_WIPED:
        return Instruction.REMOVE_EXEC_HOST if view.sge else None
    if step == DrainStep.OUT_OF_SGE:
        return Instruction.COMPLETE
    if step == DrainStep.TERMINATING:
        return Instruction.TERMINATE_NODE
    if step == DrainStep.ABORTING:
        return Instruction.REENABLE_QUEUE
    return None


def step_after(step: DrainStep, instruction: Instruction | None) -> DrainStep:
    """The step the drain is in once `instruction` (None: a step with nothing to do) succeeded."""
    if instruction in (Instruction.WAIT_FOR_JOBS, Instruction.RESCHEDULE_JOBS):
        return step  # observe again; the step advances when no task runs any more
    if instruction == Instruction.REENABLE_QUEUE:
        return DrainStep.ABORTED
    return ADVANCE.get(step, step)


def describe(step: DrainStep, running_tasks: int, deadline: float, now: float) -> str:
    if step == DrainStep.QUEUE_DISABLED and running_tasks:
        left = f", rescheduling in {max(deadline - now, 0):.0f}s" if deadline else ""
        return f"waiting for {running_tasks} running task(s){left}"
    return {
        DrainStep.START: "disabling the SGE queue",
        DrainStep.QUEUE_DISABLED: "no job runs; unmounting",
        DrainStep.JOBS_DONE: "unmounting fast mounts",
        DrainStep.UNMOUNTED: "wiping /scratch",
        DrainStep.SCRATCH_WIPED: "removing the SGE exec host",
        DrainStep.OUT_OF_SGE: "drained; terminating the node",
        DrainStep.TERMINATING: "terminating the node",
        DrainStep.DONE: "terminated",
        DrainStep.ABORTING: "aborting: re-enabling the SGE queue",
        DrainStep.ABORTED: "aborted; queue re-enabled",
    }[step]
