"""A member without its manager, as data: states, what to do in each, and where success leads.

Pure (no I/O, no clock): `agent.orphan` observes (is the session up, how many tasks run here, the
time), asks `next_instruction`, carries the instruction out and moves to `step_after`. A member that
can be replaced (dynamic) must never outlive its manager, or it runs up the bill with nobody to remove
it (ParallelCluster's computemgtd does the same); a static member is the cluster itself and keeps
retrying however long the manager is away.

    ATTACHED ⇄ ADRIFT → FENCED → JOBS_DONE → WIPED → ENDING
    (ADRIFT/FENCED go back to ATTACHED when the manager answers again; from JOBS_DONE on, the member
    is committed: /scratch is being wiped, so it ends and the returning manager reconciles it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OrphanState(StrEnum):
    ATTACHED = "attached"  # the manager answers
    ADRIFT = "adrift"  # the manager has not answered since `adrift_since`
    FENCED = "fenced"  # orphaned: takes no new jobs, running ones may finish until the job deadline
    JOBS_DONE = "jobs-done"  # no task left (or the deadline passed); committed to ending
    WIPED = "wiped"  # /scratch wiped, fast mounts gone
    ENDING = "ending"  # the node's shutdown was requested (terminal)


class OrphanInstruction(StrEnum):
    WAIT = "wait"  # nothing to do but observe again
    FORGET = "forget"  # the manager answers: clear the adrift clock
    FENCE = "fence"  # report bench_orphaned=1 to sge_execd's load sensor: the queue goes into alarm
    UNFENCE = "unfence"  # the manager is back before anything was lost: take jobs again
    STOP_JOBS = "stop-jobs"  # the job deadline passed: the node goes regardless, jobs end with it
    WIPE = "wipe"  # unmount the fast mounts, empty /scratch (the drain's wipe, without the manager)
    SHUT_DOWN = "shut-down"  # the provider-specific end of the node (agent.node_shutdown)


@dataclass(frozen=True)
class OrphanView:
    """What the watcher observed, for one decision."""

    state: OrphanState
    connected: bool  # a session with the manager is up
    dynamic: bool  # the manager said this member is replaceable (a static member never ends itself)
    now: float
    adrift_since: float  # when the manager was last seen (meaningful in ADRIFT and later)
    orphan_timeout_s: float
    fenced_at: float  # when FENCED began (meaningful from FENCED on)
    job_grace_s: float  # how long running tasks may go on once fenced
    running_tasks: int


# Where each (state, instruction) leads once the instruction succeeded. Anything not listed keeps the state.
TRANSITIONS: dict[tuple[OrphanState, OrphanInstruction], OrphanState] = {
    (OrphanState.ATTACHED, OrphanInstruction.WAIT): OrphanState.ATTACHED,
    (OrphanState.ATTACHED, OrphanInstruction.FORGET): OrphanState.ATTACHED,
    (OrphanState.ADRIFT, OrphanInstruction.FORGET): OrphanState.ATTACHED,
    (OrphanState.ADRIFT, OrphanInstruction.FENCE): OrphanState.FENCED,
    (OrphanState.FENCED, OrphanInstruction.UNFENCE): OrphanState.ATTACHED,
    (OrphanState.FENCED, OrphanInstruction.STOP_JOBS): OrphanState.JOBS_DONE,
    (OrphanState.JOBS_DONE, OrphanInstruction.WIPE): OrphanState.WIPED,
    (OrphanState.WIPED, OrphanInstruction.SHUT_DOWN): OrphanState.ENDING,
}
# Moves that need no action: the observation itself is the news.
PASSIVE: dict[OrphanState, OrphanState] = {
    OrphanState.ATTACHED: OrphanState.ADRIFT,  # the session went down
    OrphanState.FENCED: OrphanState.JOBS_DONE,  # the last task finished
}


def next_instruction(view: OrphanView) -> OrphanInstruction | None:
    """The one thing to do now; None means "move on without an action" (see PASSIVE)."""
    state = view.state
    if state == OrphanState.ATTACHED:
        return OrphanInstruction.WAIT if view.connected else None
    if state == OrphanState.ADRIFT:
        if view.connected:
            return OrphanInstruction.FORGET
        if view.dynamic and view.now - view.adrift_since >= view.orphan_timeout_s:
            return OrphanInstruction.FENCE
        return OrphanInstruction.WAIT
    if state == OrphanState.FENCED:
        if view.connected:
            return OrphanInstruction.UNFENCE
        if view.running_tasks == 0:
            return None
        if view.now - view.fenced_at >= view.job_grace_s:
            return OrphanInstruction.STOP_JOBS
        return OrphanInstruction.WAIT
    if state == OrphanState.JOBS_DONE:
        return OrphanInstruction.WIPE
    if state == OrphanState.WIPED:
        return OrphanInstruction.SHUT_DOWN
    return OrphanInstruction.WAIT  # ENDING: the node is going away


def step_after(state: OrphanState, instruction: OrphanInstruction | None) -> OrphanState:
    if instruction is None:
        return PASSIVE.get(state, state)
    return TRANSITIONS.get((state, instruction), state)


def describe(view: OrphanView) -> str:
    if view.state == OrphanState.ADRIFT:
        away = view.now - view.adrift_since
        if not view.dynamic:
            return f"manager unreachable for {away:.0f}s; a static member keeps retrying"
        return f"manager unreachable for {away:.0f}s; ending this member after {view.orphan_timeout_s:.0f}s"
    if view.state == OrphanState.FENCED:
        left = max(view.fenced_at + view.job_grace_s - view.now, 0)
        return f"orphaned: no new jobs; waiting for {view.running_tasks} task(s), at most {left:.0f}s more"
    return {
        OrphanState.ATTACHED: "connected to the manager",
        OrphanState.JOBS_DONE: "orphaned: wiping /scratch",
        OrphanState.WIPED: "orphaned: shutting the node down",
        OrphanState.ENDING: "orphaned: node shutting down",
    }[view.state]
