from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from manager.drain_table import DrainStep, DrainView, Instruction, next_instruction, step_after


def view(step: DrainStep, **kw: object) -> DrainView:
    base: dict[str, object] = {"running_tasks": 0, "deadline": 0.0, "now": 1000.0, "sge": True,
                               "agent_connected": True, "abort_if_busy": False}
    base.update(kw)
    return DrainView(step=step, **base)  # type: ignore[arg-type]


def run_to_end(v: DrainView) -> list[Instruction | None]:
    """Drive the table as the executor does, assuming every instruction succeeds."""
    done = []
    step = v.step
    for _ in range(20):
        instruction = next_instruction(DrainView(**{**v.__dict__, "step": step}))
        done.append(instruction)
        new = step_after(step, instruction)
        if new == step:
            break
        step = new
    return done


def test_full_drain_runs_every_step_in_order() -> None:
    assert run_to_end(view(DrainStep.START)) == [
        Instruction.DISABLE_QUEUE, None, Instruction.UNMOUNT_ALL, Instruction.WIPE_SCRATCH,
        Instruction.REMOVE_EXEC_HOST, Instruction.COMPLETE, Instruction.TERMINATE_NODE, None]


def test_running_jobs_are_waited_for_never_killed() -> None:
    v = view(DrainStep.QUEUE_DISABLED, running_tasks=3)
    assert next_instruction(v) == Instruction.WAIT_FOR_JOBS
    assert step_after(DrainStep.QUEUE_DISABLED, Instruction.WAIT_FOR_JOBS) == DrainStep.QUEUE_DISABLED


def test_past_the_deadline_jobs_are_rescheduled_elsewhere() -> None:
    assert next_instruction(view(DrainStep.QUEUE_DISABLED, running_tasks=2, deadline=900.0)) == \
        Instruction.RESCHEDULE_JOBS
    assert next_instruction(view(DrainStep.QUEUE_DISABLED, running_tasks=2, deadline=1100.0)) == \
        Instruction.WAIT_FOR_JOBS


def test_scale_down_that_finds_a_job_reenables_the_queue() -> None:
    v = view(DrainStep.QUEUE_DISABLED, running_tasks=1, abort_if_busy=True)
    assert next_instruction(v) == Instruction.REENABLE_QUEUE
    assert step_after(DrainStep.QUEUE_DISABLED, Instruction.REENABLE_QUEUE) == DrainStep.ABORTED


def test_lost_member_without_agent_skips_agent_steps() -> None:
    steps = run_to_end(view(DrainStep.START, agent_connected=False))
    assert Instruction.UNMOUNT_ALL not in steps and Instruction.WIPE_SCRATCH not in steps
    assert Instruction.TERMINATE_NODE in steps


def test_without_sge_no_sge_instruction_is_given() -> None:
    steps = run_to_end(view(DrainStep.START, sge=False))
    assert not {Instruction.DISABLE_QUEUE, Instruction.REMOVE_EXEC_HOST} & set(steps)


@given(st.sampled_from(list(DrainStep)), st.integers(0, 5), st.booleans(), st.booleans(), st.booleans())
def test_exec_host_is_never_removed_while_a_task_runs(step: DrainStep, running: int, sge: bool, agent: bool,
                                                      abort: bool) -> None:
    v = view(step, running_tasks=running, sge=sge, agent_connected=agent, abort_if_busy=abort)
    instruction = next_instruction(v)
    if step == DrainStep.QUEUE_DISABLED and running:
        assert instruction in (Instruction.WAIT_FOR_JOBS, Instruction.REENABLE_QUEUE)
        assert step_after(step, instruction) != DrainStep.JOBS_DONE
