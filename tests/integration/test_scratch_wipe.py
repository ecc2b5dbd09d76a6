"""The /scratch wipe of a drain with FUSE mounts a job left below /scratch: one whose server hangs (any
look inside blocks) and one whose server died (ENOTCONN). The agent's WipeScratch command must finish,
remove everything of its own filesystem, and never enter the mounts (root, /dev/fuse)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import scratch
from agent.commands import CommandHandler
from agent.mounts import MountManager
from agent.mountsys import read_mount_table
from protos.bench.v1 import agent_pb2
from tests.conftest import require_fuse
from tests.integration.fastmount_helpers import start_worker

pytestmark = pytest.mark.fuse

WIPE_LIMIT_S = 60.0


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)


def job_with_fuse_mount(scratch_dir: Path, tmp_path: Path, name: str, workers: list[subprocess.Popen[bytes]]
                        ) -> tuple[Path, subprocess.Popen[bytes]]:
    source = tmp_path / f"{name}-source"
    source.mkdir()
    (source / "data.txt").write_text("the job's mounted data\n")
    mount = scratch_dir / name / "mnt"
    mount.mkdir(parents=True)
    (scratch_dir / name / "output.txt").write_text("job output\n")
    proc = start_worker(source, mount, "--engine", "python")
    workers.append(proc)
    assert (mount / "data.txt").read_text() == "the job's mounted data\n"
    return source, proc


def wipe_via_agent(tmp_path: Path, scratch_dir: Path) -> agent_pb2.CommandResult:
    async def main() -> agent_pb2.CommandResult:
        handler = CommandHandler(MountManager(tmp_path / "agent-state"), tmp_path / "agent-state", scratch_dir,
                                 lambda: None)
        command = agent_pb2.ManagerCommand(command_id="wipe-1", wipe_scratch=agent_pb2.WipeScratch())
        return await asyncio.wait_for(handler.handle(command), WIPE_LIMIT_S)

    return asyncio.run(main())


def test_a_stale_or_hung_fuse_mount_below_scratch_does_not_wedge_the_wipe(
        tmp_path: Path, workers: list[subprocess.Popen[bytes]]) -> None:
    require_fuse()
    scratch_dir = tmp_path / "scratch"
    scratch.prepare(scratch_dir)
    outside = tmp_path / "outside.txt"
    outside.write_text("not scratch's\n")
    os.symlink(outside, scratch_dir / "link-out")
    hung_source, hung = job_with_fuse_mount(scratch_dir, tmp_path, "job-hung", workers)
    dead_source, dead = job_with_fuse_mount(scratch_dir, tmp_path, "job-dead", workers)
    hung.send_signal(signal.SIGSTOP)  # its server stops answering: a look inside would block
    dead.kill()  # its server is gone: ENOTCONN
    dead.wait(10)

    result = wipe_via_agent(tmp_path, scratch_dir)

    assert result.ok, result.message
    assert "detached 2 mount(s)" in result.message, result.message
    assert sorted(os.listdir(scratch_dir)) == [scratch.MARKER]
    assert not [p for p in read_mount_table() if p.startswith(str(scratch_dir) + "/")]
    # never entered: what the mounts showed is intact, and so is what a symlink pointed at
    assert (hung_source / "data.txt").exists() and (dead_source / "data.txt").exists()
    assert outside.read_text() == "not scratch's\n"


def test_the_walk_never_enters_another_filesystem(tmp_path: Path) -> None:
    """A mount that is there during the walk (not detached: it appeared after the mount table was read)
    is skipped by its st_dev, with everything on it, and named in the result."""
    require_fuse()
    scratch_dir = tmp_path / "scratch"
    scratch.prepare(scratch_dir)
    (scratch_dir / "job" / "mnt").mkdir(parents=True)
    (scratch_dir / "job" / "file").write_text("x")
    (scratch_dir / "other-job").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(scratch_dir / "job" / "mnt")], check=True)
    try:
        (scratch_dir / "job" / "mnt" / "keep").write_text("on another filesystem")
        result = scratch.wipe(scratch_dir)
        assert result.kept == [str(scratch_dir / "job" / "mnt")]
        assert result.removed == 1  # other-job; job itself stays, holding the mount point
        assert (scratch_dir / "job" / "mnt" / "keep").read_text() == "on another filesystem"
        assert not (scratch_dir / "job" / "file").exists()
        assert scratch.mounts_below(scratch_dir) == [str(scratch_dir / "job" / "mnt")]
    finally:
        subprocess.run(["umount", "-l", str(scratch_dir / "job" / "mnt")], check=False)
