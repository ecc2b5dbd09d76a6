"""Mounts show only what the requester may read (issue 17, item 6): the manager's mount service checks the
source as the requesting unix user and stores it resolved; agents re-validate it before every mount,
remount, restore and late join. Real unix users, real FUSE workers, the real MountService and MountManager
(root, /dev/fuse, useradd)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from agent.mounts import MountManager, MountReportData, MountSpecData
from agent.mountsys import read_mount_table
from manager.config import ManagerConfig
from manager.errors import RequestError
from manager.events import EventBus
from manager.mounts import MountService
from manager.registry import MemberRegistry
from manager.sessions import SessionTable
from manager.store import Store
from tests.conftest import require_fuse
from tests.integration.test_mount_manager import _unmount_everything_below, worker_pid
from tests.integration.unix_users import UnixUser, chown, unix_users

pytestmark = pytest.mark.fuse

ALICE, BOB = "bench-t-alice", "bench-t-bob"


@dataclass
class World:
    base: Path
    data: Path
    alice: UnixUser
    bob: UnixUser

    def service(self) -> MountService:
        store = Store(self.base / "state.db")
        return MountService(ManagerConfig(data_root=self.data), store, MemberRegistry(store, EventBus()),
                            SessionTable(), time.time)


@pytest.fixture
def world() -> Iterator[World]:
    require_fuse()
    # Not below pytest's tmp_path: /tmp/pytest-of-root is 0700, which would refuse the users everything.
    base = Path(tempfile.mkdtemp(prefix="bench-access-", dir="/var/tmp"))
    base.chmod(0o755)
    data = base / "data"
    (data / "mounts").mkdir(parents=True)
    with unix_users(ALICE, BOB) as users:
        alice, bob = users[ALICE], users[BOB]
        for d in ("project", "project/shared", "project/shared/a", "project/shared/b"):
            (data / d).mkdir(exist_ok=True)
        (data / "project/shared/a/a.txt").write_text("a\n")
        (data / "project/shared/b/b.txt").write_text("b\n")
        bob_home = data / "project/bob"
        (bob_home / "private" / "open-sub").mkdir(parents=True)
        (bob_home / "private" / "secret.txt").write_text("bob's secret\n")
        (bob_home / "private" / "open-sub" / "also-secret.txt").write_text("below a 0700 parent\n")
        chown(bob_home, bob, 0o755)
        chown(bob_home / "private", bob, 0o700)
        chown(bob_home / "private" / "open-sub", bob, 0o755)
        alice_home = data / "project/alice"
        alice_home.mkdir()
        chown(alice_home, alice, 0o755)
        try:
            yield World(base, data, alice, bob)
        finally:
            _unmount_everything_below(base)
            shutil.rmtree(base, ignore_errors=True)


def create(world: World, user: str, source: str, name: str = "m") -> tuple[MountService, str]:
    service = world.service()
    outcome = asyncio.run(service.create(f"{world.data}/mounts/{name}", source, "read-only", user))
    return service, outcome.source


def refused(world: World, user: str, source: str) -> RequestError:
    service = world.service()
    with pytest.raises(RequestError) as info:
        asyncio.run(service.create(f"{world.data}/mounts/m", source, "read-only", user))
    assert service.views() == [], "a refused mount was stored"
    return info.value


def test_a_contributor_cannot_mount_a_directory_they_cannot_read(world: World) -> None:
    err = refused(world, ALICE, f"{world.data}/project/bob/private")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert ALICE in err.message and "private" in err.message and "owner bench-t-bob" in err.message


def test_nor_a_readable_directory_below_a_0700_parent(world: World) -> None:
    err = refused(world, ALICE, f"{world.data}/project/bob/private/open-sub")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert f"{world.data}/project/bob/private (drwx------" in err.message  # names the parent that stops her


def test_nor_through_a_symlink_of_their_own(world: World) -> None:
    os.symlink(world.data / "project/bob/private/open-sub", world.data / "project/alice/door")
    err = refused(world, ALICE, f"{world.data}/project/alice/door")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED


def test_the_owner_and_root_may_mount_it(world: World) -> None:
    _, source = create(world, BOB, f"{world.data}/project/bob/private", "bobs")
    assert source == f"{world.data}/project/bob/private"
    _, source = create(world, "root", f"{world.data}/project/bob/private/open-sub", "roots")
    assert source == f"{world.data}/project/bob/private/open-sub"


def test_a_name_without_a_unix_account_is_refused(world: World) -> None:
    err = refused(world, "no-such-user-here", f"{world.data}/project/shared/a")
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert "no unix account" in err.message


def test_a_source_that_does_not_exist_is_not_found(world: World) -> None:
    err = refused(world, ALICE, f"{world.data}/project/shared/nope")
    assert err.code == grpc.StatusCode.NOT_FOUND


def agent_run(world: World, state: str, body: object) -> object:
    async def main() -> object:
        mgr = MountManager(world.base / state, data_root=world.data)
        await mgr.start()
        try:
            return await body(mgr)  # type: ignore[operator]
        finally:
            await mgr.close()
    return asyncio.run(main())


def test_a_retargeted_symlink_changes_nothing_a_late_joiner_mounts(world: World) -> None:
    """The manager stores the resolved source: retargeting the link afterwards leads nowhere new."""
    link = world.data / "project/alice/current"
    os.symlink(world.data / "project/shared/a", link)
    service, source = create(world, ALICE, str(link))
    assert source == f"{world.data}/project/shared/a"
    link.unlink()
    os.symlink(world.data / "project/bob/private", link)  # as if alice retargeted it after the check

    async def late_join(mgr: MountManager) -> list[str]:
        specs = [MountSpecData(v.mount_path, v.source, v.mode) for v in service.views()]
        reports = await mgr.sync(specs)
        assert [r.state for r in reports] == ["mounted"], reports
        return sorted(os.listdir(f"{world.data}/mounts/m"))

    assert agent_run(world, "late", late_join) == ["a.txt"]


def wait_failed(mgr: MountManager, limit_s: float = 30) -> MountReportData:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        report = mgr.reports()[0]
        if report.state == "failed":
            return report
        time.sleep(0.1)
    raise AssertionError(f"the mount never failed: {mgr.reports()}")


def swap_for_link(world: World, directory: Path, target: Path) -> None:
    """alice moves her directory away and puts a symlink to somewhere else where it was."""
    directory.rename(directory.with_name(directory.name + ".moved"))
    os.symlink(target, directory)


def test_a_symlink_put_on_the_resolved_path_fails_late_join_remount_and_restore(world: World) -> None:
    mine = world.data / "project/alice/mine"
    mine.mkdir()
    (mine / "ok.txt").write_text("mine\n")
    chown(mine, world.alice, 0o755)
    _service, source = create(world, ALICE, str(mine))
    spec = MountSpecData(f"{world.data}/mounts/m", source, "read-only")

    async def mounted_then_swapped(mgr: MountManager) -> MountReportData:
        await mgr.create(spec)
        assert os.listdir(spec.mount_path) == ["ok.txt"]
        swap_for_link(world, mine, world.data / "project/bob/private")
        os.kill(await asyncio.to_thread(worker_pid, spec.mount_path), signal.SIGKILL)  # forces a remount
        deadline = time.monotonic() + 30
        while mgr.reports()[0].state != "failed":
            assert time.monotonic() < deadline, mgr.reports()
            await asyncio.sleep(0.1)
        return mgr.reports()[0]

    report = agent_run(world, "node1", mounted_then_swapped)
    assert isinstance(report, MountReportData)
    assert "now resolves to" in report.message and "private" in report.message, report.message
    assert spec.mount_path not in read_mount_table()

    async def restored(mgr: MountManager) -> MountReportData:
        return mgr.reports()[0]  # start() restored the remembered mount, or failed it

    report = agent_run(world, "node1", restored)
    assert isinstance(report, MountReportData) and report.state == "failed" and "now resolves to" in report.message

    async def late_join(mgr: MountManager) -> list[MountReportData]:
        return await mgr.sync([spec])

    reports = agent_run(world, "node2", late_join)
    assert isinstance(reports, list) and reports[0].state == "failed" and "now resolves to" in reports[0].message
    assert spec.mount_path not in read_mount_table()
