"""Members never outlive their manager: the state table (pure) and the watcher that acts on it
(real files in a temporary /scratch and state directory; the node's end is recorded, not carried out)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from agent import scratch
from agent.config import AgentConfig, ConfigError
from agent.mounts import MountManager
from agent.node_shutdown import NodeShutdownError, Poweroff, for_setting
from agent.orphan import OrphanWatcher, Persisted
from agent.orphan_table import OrphanInstruction as I
from agent.orphan_table import OrphanState as S
from agent.orphan_table import OrphanView, next_instruction, step_after

TIMEOUT, GRACE = 60.0, 100.0


def view(state: S, *, connected: bool = False, dynamic: bool = True, now: float = 0.0, adrift_since: float = 0.0,
         fenced_at: float = 0.0, tasks: int = 0) -> OrphanView:
    return OrphanView(state=state, connected=connected, dynamic=dynamic, now=now, adrift_since=adrift_since,
                      orphan_timeout_s=TIMEOUT, fenced_at=fenced_at, job_grace_s=GRACE, running_tasks=tasks)


def walk(v: OrphanView) -> tuple[I | None, S]:
    instruction = next_instruction(v)
    return instruction, step_after(v.state, instruction)


def test_losing_the_manager_makes_a_member_adrift_and_its_return_attaches_it_again() -> None:
    assert walk(view(S.ATTACHED, connected=True)) == (I.WAIT, S.ATTACHED)
    assert walk(view(S.ATTACHED)) == (None, S.ADRIFT)
    assert walk(view(S.ADRIFT, now=TIMEOUT - 1)) == (I.WAIT, S.ADRIFT)
    assert walk(view(S.ADRIFT, connected=True, now=TIMEOUT + 5)) == (I.FORGET, S.ATTACHED)


def test_a_dynamic_member_fences_itself_after_the_timeout_and_a_static_one_never() -> None:
    assert walk(view(S.ADRIFT, now=TIMEOUT)) == (I.FENCE, S.FENCED)
    for later in (TIMEOUT, 10 * TIMEOUT, 1e9):
        assert walk(view(S.ADRIFT, dynamic=False, now=later)) == (I.WAIT, S.ADRIFT)


def test_running_tasks_finish_before_the_member_goes_up_to_the_grace_deadline() -> None:
    assert walk(view(S.FENCED, fenced_at=0, now=GRACE - 1, tasks=2)) == (I.WAIT, S.FENCED)
    assert walk(view(S.FENCED, fenced_at=0, now=GRACE - 1, tasks=0)) == (None, S.JOBS_DONE)
    assert walk(view(S.FENCED, fenced_at=0, now=GRACE, tasks=2)) == (I.STOP_JOBS, S.JOBS_DONE)


def test_the_manager_back_before_the_wipe_unfences_after_it_the_member_still_ends() -> None:
    assert walk(view(S.FENCED, connected=True, tasks=1)) == (I.UNFENCE, S.ATTACHED)
    assert walk(view(S.JOBS_DONE, connected=True)) == (I.WIPE, S.WIPED)
    assert walk(view(S.WIPED, connected=True)) == (I.SHUT_DOWN, S.ENDING)
    assert walk(view(S.ENDING, connected=True)) == (I.WAIT, S.ENDING)


def test_every_state_is_reachable_and_ending_is_terminal() -> None:
    seen, frontier = {S.ATTACHED}, [S.ATTACHED]
    while frontier:
        state = frontier.pop()
        for connected in (False, True):
            for dynamic in (False, True):
                for tasks in (0, 1):
                    for now in (0.0, TIMEOUT, TIMEOUT + GRACE):
                        _, after = walk(view(state, connected=connected, dynamic=dynamic, tasks=tasks, now=now))
                        if after not in seen:
                            seen.add(after)
                            frontier.append(after)
    assert seen == set(S)
    assert all(walk(view(S.ENDING, connected=c, now=1e9))[1] == S.ENDING for c in (False, True))


@dataclass
class RecordedShutdown:
    name: str = "recorded"
    reasons: list[str] = field(default_factory=list)
    fail: bool = False

    def shut_down(self, reason: str) -> None:
        if self.fail:
            raise NodeShutdownError("not this time")
        self.reasons.append(reason)


@dataclass
class World:
    connected: bool = True
    dynamic: bool = True
    now: float = 1000.0
    tasks: int = 0


def make_watcher(tmp_path: Path, world: World, shutdown: RecordedShutdown) -> tuple[OrphanWatcher, Path]:
    scratch_dir = tmp_path / "scratch"
    scratch.prepare(scratch_dir)
    config = AgentConfig(state_dir=tmp_path / "state", scratch_dir=scratch_dir, data_root=tmp_path / "data",
                         orphan_timeout_s=TIMEOUT, orphan_job_grace_s=GRACE)
    config.state_dir.mkdir()
    mounts = MountManager(config.state_dir / "mounts", data_root=config.data_root)
    watcher = OrphanWatcher(config, mounts, shutdown, lambda: world.connected, lambda: world.dynamic,
                            clock=lambda: world.now, tasks=lambda: world.tasks)
    return watcher, scratch_dir


def test_an_orphaned_dynamic_member_fences_waits_for_its_task_wipes_scratch_and_ends(tmp_path: Path) -> None:
    world, shutdown = World(), RecordedShutdown()
    watcher, scratch_dir = make_watcher(tmp_path, world, shutdown)
    (scratch_dir / "job-output").write_text("x")

    async def scenario() -> None:
        await watcher.step()  # connected: last contact now
        world.connected = False
        await watcher.step()
        assert watcher.persisted.state == S.ADRIFT
        world.now += TIMEOUT
        world.tasks = 1
        assert await watcher.step() == I.FENCE
        flag = scratch_dir / scratch.ORPHAN_FLAG
        assert flag.read_text() == "1\n"
        world.now += 10
        assert await watcher.step() == I.WAIT and shutdown.reasons == []
        assert (scratch_dir / "job-output").exists()  # the running task's files stay while it runs
        world.tasks = 0
        await watcher.step()
        assert watcher.persisted.state == S.JOBS_DONE
        assert await watcher.step() == I.WIPE
        assert sorted(p.name for p in scratch_dir.iterdir()) == sorted([scratch.MARKER, scratch.ORPHAN_FLAG])
        assert await watcher.step() == I.SHUT_DOWN
        assert watcher.persisted.state == S.ENDING and len(shutdown.reasons) == 1
        assert "manager unreachable for 70s" in shutdown.reasons[0]

    asyncio.run(scenario())


def test_a_static_member_keeps_retrying(tmp_path: Path) -> None:
    world, shutdown = World(dynamic=False), RecordedShutdown()
    watcher, scratch_dir = make_watcher(tmp_path, world, shutdown)

    async def scenario() -> None:
        await watcher.step()
        world.connected = False
        for _ in range(5):
            world.now += 10 * TIMEOUT
            await watcher.step()
        assert watcher.persisted.state == S.ADRIFT and shutdown.reasons == []
        assert not (scratch_dir / scratch.ORPHAN_FLAG).exists()

    asyncio.run(scenario())


async def fence(watcher: OrphanWatcher, world: World) -> None:
    """Connected, then the manager gone for the whole timeout: the member fences itself."""
    await watcher.step()
    world.connected = False
    await watcher.step()
    world.now += TIMEOUT
    await watcher.step()


def test_the_manager_back_while_fenced_lifts_the_fence(tmp_path: Path) -> None:
    world, shutdown = World(tasks=1), RecordedShutdown()
    watcher, scratch_dir = make_watcher(tmp_path, world, shutdown)

    async def scenario() -> None:
        await fence(watcher, world)
        assert (scratch_dir / scratch.ORPHAN_FLAG).exists()
        world.connected = True
        assert await watcher.step() == I.UNFENCE
        assert watcher.persisted.state == S.ATTACHED and not (scratch_dir / scratch.ORPHAN_FLAG).exists()

    asyncio.run(scenario())


def test_an_agent_restarted_while_orphaned_resumes_instead_of_starting_over(tmp_path: Path) -> None:
    world, shutdown = World(tasks=1), RecordedShutdown()
    watcher, _ = make_watcher(tmp_path, world, shutdown)

    async def scenario() -> None:
        await fence(watcher, world)

    asyncio.run(scenario())
    saved = Persisted.load(tmp_path / "state" / "orphan.json")
    assert saved.state == S.FENCED and saved.fenced_at == world.now


def test_a_failed_shutdown_is_retried(tmp_path: Path) -> None:
    world, shutdown = World(), RecordedShutdown(fail=True)
    watcher, _ = make_watcher(tmp_path, world, shutdown)
    watcher.persisted = Persisted(S.WIPED, world.now - TIMEOUT, world.now)

    async def scenario() -> None:
        with pytest.raises(NodeShutdownError):
            await watcher.step()
        assert watcher.persisted.state == S.WIPED
        shutdown.fail = False
        await watcher.step()
        assert watcher.persisted.state == S.ENDING

    asyncio.run(scenario())


def test_poweroff_runs_its_command_and_reports_a_failing_one(tmp_path: Path) -> None:
    done = tmp_path / "powered-off"
    Poweroff(command=("touch", str(done))).shut_down("test")
    assert done.exists()
    with pytest.raises(NodeShutdownError, match="false"):
        Poweroff(command=("false",)).shut_down("test")


def test_node_shutdown_settings_are_validated() -> None:
    assert for_setting("init").name == "init" and for_setting("poweroff").name == "poweroff"
    with pytest.raises(ConfigError, match="--node-shutdown must be one of none, init, poweroff"):
        replace(AgentConfig(), node_shutdown="reboot")
    with pytest.raises(ConfigError, match="--orphan-timeout"):
        replace(AgentConfig(), orphan_timeout_s=0)
