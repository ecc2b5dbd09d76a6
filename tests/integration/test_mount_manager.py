"""MountManager with real FUSE workers, real bind mounts and a real state directory (root, /dev/fuse)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from agent.mounts import MountError, MountManager, MountReportData, MountSpecData
from agent.mountsys import read_mount_table
from tests.conftest import require_fuse

pytestmark = pytest.mark.fuse
T = TypeVar("T")


def _unmount_everything_below(root: Path) -> None:
    # Teardown that also works when a test failed half-way: kill stray workers, detach every mount.
    for point in sorted(read_mount_table(), key=len, reverse=True):
        if point.startswith(str(root)):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    out = subprocess.run(["pgrep", "-f", f"agent.fastmount.worker .*{root}"], capture_output=True, text=True)
    for pid in out.stdout.split():
        os.kill(int(pid), signal.SIGKILL)


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    require_fuse()
    root = tmp_path / "data"
    project = root / "project" / "p1"
    (root / "mounts").mkdir(parents=True)
    (project / "dir").mkdir(parents=True)
    (project / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 123))
    (project / "dir" / "small.txt").write_text("hello\n")
    (root / "project" / "p2").mkdir()
    (root / "project" / "p2" / "other.txt").write_text("other\n")
    try:
        yield root
    finally:
        _unmount_everything_below(tmp_path)


def run_with(data_root: Path, body: Callable[[MountManager], Awaitable[T]], state_dir: Path | None = None,
             engine: str = "auto") -> T:
    state = state_dir or data_root.parent / "state"

    async def main() -> T:
        mgr = MountManager(state, data_root=data_root, engine=engine)
        await mgr.start()
        try:
            return await body(mgr)
        finally:
            await mgr.close()

    return asyncio.run(main())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ro_spec(root: Path, name: str = "m1", source: str = "p1") -> MountSpecData:
    return MountSpecData(f"{root}/mounts/{name}", f"{root}/project/{source}", "read-only")


def worker_pid(mount_path: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"agent.fastmount.worker .*{mount_path}"],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def is_mounted(path: str) -> bool:
    return path in read_mount_table()


@pytest.mark.parametrize("engine", ["auto", "python"])
def test_read_only_mount_serves_the_source_and_refuses_writes(data_root: Path, engine: str) -> None:
    spec = ro_spec(data_root)

    async def body(mgr: MountManager) -> MountReportData:
        report = await mgr.create(spec)
        mnt = Path(spec.mount_path)
        assert await asyncio.to_thread(sha256, mnt / "big.bin") == sha256(data_root / "project/p1/big.bin")
        assert (mnt / "dir" / "small.txt").read_text() == "hello\n"
        with pytest.raises(OSError) as info:
            (mnt / "new.txt").write_text("x")
        assert info.value.errno == errno.EROFS
        assert report.state == "mounted"
        await asyncio.sleep(2.5)  # the worker publishes its counters every 2 s
        return mgr.reports()[0]

    report = run_with(data_root, body, engine=engine)
    # auto = the native engine here (a local source): the kernel reads the file through passthrough, so
    # the bytes never cross the worker; the pyfuse3 engine serves and counts them.
    assert report.bytes_read >= (8 * 1024 * 1024 if engine == "python" else 0)
    assert report.errors == 0
    assert not is_mounted(spec.mount_path)  # close() unmounted it


def test_create_is_idempotent_and_delete_removes(data_root: Path) -> None:
    spec = ro_spec(data_root)

    async def body(mgr: MountManager) -> None:
        first = await mgr.create(spec)
        again = await mgr.create(MountSpecData(spec.mount_path + "/", spec.source, spec.mode))
        assert (first.spec, first.state) == (again.spec, again.state)
        assert len(mgr.reports()) == 1
        await mgr.delete(spec.mount_path)
        assert not is_mounted(spec.mount_path)
        assert mgr.reports() == []
        await mgr.delete(spec.mount_path)  # deleting twice is fine

    run_with(data_root, body)


@pytest.mark.parametrize(("mount", "source", "mode", "code"), [
    ("{root}/elsewhere/x", "{root}/project/p1", "read-only", "INVALID_ARGUMENT"),
    ("{root}/mounts/x", "{root}/project/missing", "read-only", "NOT_FOUND"),
    ("{root}/mounts/x", "{root}/project/../etc", "read-only", "INVALID_ARGUMENT"),
    ("{root}/mounts/x", "/etc", "read-only", "INVALID_ARGUMENT"),
    ("{root}/mounts/x", "{root}/project/p1", "fast", "INVALID_ARGUMENT"),
    ("{root}/mounts/m1", "{root}/project/p2", "read-only", "ALREADY_EXISTS"),
    ("{root}/mounts/m1/inner", "{root}/project/p2", "read-only", "FAILED_PRECONDITION"),
])
def test_bad_requests_are_refused_with_nothing_mounted(data_root: Path, mount: str, source: str, mode: str,
                                                       code: str) -> None:
    async def body(mgr: MountManager) -> None:
        await mgr.create(ro_spec(data_root))
        before = set(read_mount_table())
        bad = MountSpecData(mount.format(root=data_root), source.format(root=data_root), mode)
        with pytest.raises(MountError) as info:
            await mgr.create(bad)
        assert info.value.code == code
        assert info.value.message
        assert set(read_mount_table()) == before
        assert [r.spec.mount_path for r in mgr.reports()] == [f"{data_root}/mounts/m1"]

    run_with(data_root, body)
    assert not any(p.startswith(str(data_root)) for p in read_mount_table())


def test_symlink_escape_is_refused(data_root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", data_root / "project" / "sneaky")

    async def body(mgr: MountManager) -> None:
        with pytest.raises(MountError) as info:
            await mgr.create(MountSpecData(f"{data_root}/mounts/s", f"{data_root}/project/sneaky", "read-only"))
        assert info.value.code == "INVALID_ARGUMENT"

    run_with(data_root, body)
    assert not (data_root / "mounts" / "s").exists()


def test_killed_worker_is_replaced_within_ten_seconds(data_root: Path) -> None:
    spec = ro_spec(data_root)
    expected = sha256(data_root / "project/p1/big.bin")

    async def body(mgr: MountManager) -> float:
        await mgr.create(spec)
        os.kill(await asyncio.to_thread(worker_pid, spec.mount_path), signal.SIGKILL)
        killed = time.monotonic()
        last_error = None
        while time.monotonic() - killed < 10:
            try:
                got = await asyncio.to_thread(sha256, Path(spec.mount_path) / "big.bin")
                if got == expected:
                    return time.monotonic() - killed
            except OSError as exc:
                last_error = exc
            await asyncio.sleep(0.1)
        raise AssertionError(f"reads did not work again within 10 s (last error: {last_error}); "
                             f"reports: {mgr.reports()}")

    recovered_after = run_with(data_root, body)
    assert recovered_after < 10


def test_read_write_mode_is_a_bind_mount(data_root: Path) -> None:
    spec = MountSpecData(f"{data_root}/mounts/rw", f"{data_root}/project/p2", "read-write")

    async def body(mgr: MountManager) -> None:
        report = await mgr.create(spec)
        assert report.state == "mounted"
        entry = read_mount_table()[spec.mount_path]
        assert not entry.fstype.startswith("fuse")
        (Path(spec.mount_path) / "written.txt").write_text("through the mount")
        assert (data_root / "project" / "p2" / "written.txt").read_text() == "through the mount"
        await mgr.delete(spec.mount_path)
        assert not is_mounted(spec.mount_path)

    run_with(data_root, body)


def test_mounts_are_restored_from_the_state_dir(data_root: Path) -> None:
    state = data_root.parent / "state"
    ro, rw = ro_spec(data_root), MountSpecData(f"{data_root}/mounts/rw", f"{data_root}/project/p2", "read-write")

    async def first_life(mgr: MountManager) -> None:
        await mgr.create(ro)
        await mgr.create(rw)

    run_with(data_root, first_life, state)
    assert not is_mounted(ro.mount_path)  # close() unmounted both
    remembered = json.loads((state / "mounts.json").read_text())["mounts"]
    assert {m["mount_path"] for m in remembered} == {ro.mount_path, rw.mount_path}

    async def second_life(mgr: MountManager) -> list[MountReportData]:
        assert (Path(ro.mount_path) / "dir" / "small.txt").read_text() == "hello\n"
        assert (Path(rw.mount_path) / "other.txt").read_text() == "other\n"
        return mgr.reports()

    reports = run_with(data_root, second_life, state)
    assert {(r.spec, r.state) for r in reports} == {(ro, "mounted"), (rw, "mounted")}


def test_stale_mount_left_by_a_crashed_agent_is_cleaned_at_start(data_root: Path) -> None:
    state = data_root.parent / "state"
    spec = ro_spec(data_root)
    mnt = Path(spec.mount_path)
    mnt.mkdir()
    # What a crashed agent leaves: the remembered set, and a FUSE mount whose worker was killed.
    worker = subprocess.Popen([sys.executable, "-m", "agent.fastmount.worker", "--source", spec.source,
                               "--mount-path", spec.mount_path])
    try:
        deadline = time.monotonic() + 10
        while not is_mounted(spec.mount_path):
            assert time.monotonic() < deadline, "worker did not mount"
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()
    with pytest.raises(OSError) as info:
        os.statvfs(mnt)
    assert info.value.errno == errno.ENOTCONN
    state.mkdir()
    (state / "mounts.json").write_text(json.dumps({"mounts": [spec.__dict__]}))

    async def body(mgr: MountManager) -> list[MountReportData]:
        assert (mnt / "dir" / "small.txt").read_text() == "hello\n"
        return mgr.reports()

    reports = run_with(data_root, body, state)
    assert [r.state for r in reports] == ["mounted"]


def test_sync_converges_to_exactly_the_given_set(data_root: Path) -> None:
    a, b = ro_spec(data_root, "a", "p1"), ro_spec(data_root, "b", "p2")
    c = MountSpecData(f"{data_root}/mounts/c", f"{data_root}/project/p2", "read-write")

    async def body(mgr: MountManager) -> None:
        await mgr.sync([a, b])
        assert {r.spec for r in mgr.reports()} == {a, b}
        reports = await mgr.sync([b, c, MountSpecData(f"{data_root}/mounts/d", "/nope", "read-only")])
        assert {r.spec.mount_path: r.state for r in reports} == {
            b.mount_path: "mounted", c.mount_path: "mounted", f"{data_root}/mounts/d": "failed"}
        assert not is_mounted(a.mount_path)
        assert is_mounted(b.mount_path) and is_mounted(c.mount_path)

    run_with(data_root, body)


def test_unmount_all_keeps_the_set_for_later(data_root: Path) -> None:
    spec = ro_spec(data_root)

    async def body(mgr: MountManager) -> None:
        await mgr.create(spec)
        await mgr.unmount_all()
        assert not is_mounted(spec.mount_path)
        assert [r.state for r in mgr.reports()] == ["unmounted"]
        again = await mgr.sync([spec])
        assert [r.state for r in again] == ["mounted"]

    run_with(data_root, body)


def test_a_worker_that_cannot_come_back_ends_failed_with_the_reason(data_root: Path) -> None:
    spec = ro_spec(data_root)

    async def body(mgr: MountManager) -> MountReportData:
        await mgr.create(spec)
        # the source vanishes, then the worker dies: every restart attempt must fail
        os.rename(data_root / "project" / "p1", data_root / "project" / "p1-moved")
        os.kill(await asyncio.to_thread(worker_pid, spec.mount_path), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            report = mgr.reports()[0]
            if report.state == "failed":
                return report
            await asyncio.sleep(0.2)
        raise AssertionError(f"mount never gave up: {mgr.reports()}")

    report = run_with(data_root, body)
    assert "could not remount" in report.message and "not a directory" in report.message
    assert not is_mounted(spec.mount_path)
