"""SgeClient against a real sge_qmaster and real execds in two local members."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from benchcluster import sge_setup
from manager.providers.base import NodeSpec
from manager.providers.local import LocalProvider
from manager.sge.client import SgeClient
from manager.sge.model import SgeError, SgeHost
from tests.integration.local_env import SMALL_SCRATCH, agent_stand_in, local_environment

CLUSTER = "sge-test"
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def sge(*args: str) -> str:
    install = sge_setup.SgeInstall()
    proc = subprocess.run(list(args), env=install.env(), capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout


def until(what: str, probe: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SgeClient, list[str], Path]]:
    base = tmp_path_factory.mktemp("sge")
    state_root = base / "state"
    with local_environment(state_root, CLUSTER, with_sge=True):
        provider = LocalProvider(CLUSTER, state_root, agent_command=lambda launch: agent_stand_in(base / "seen"))
        spec = NodeSpec(cluster_id=CLUSTER, cores=2, memory_bytes=2 << 30, scratch_bytes=SMALL_SCRATCH,
                        manager_address="127.0.0.1:1",
                        join_tokens=tuple(f"bcj_test-token-{i:02d}-0123456789" for i in range(8)))
        nodes = run(provider.create(2, spec))
        client = SgeClient()
        names = [n.hostname for n in nodes]
        try:
            yield client, names, base
        finally:
            for job in {j.job_id for j in run(client.jobs()) if j.owner == "root"}:
                subprocess.run(["qdel", str(job)], env=sge_setup.SgeInstall().env(), capture_output=True,
                               check=False)
            run(provider.terminate([n.node_id for n in nodes]))
            for name in names:
                try:
                    run(client.remove_exec_host(name))
                except SgeError:
                    time.sleep(2)
                    run(client.remove_exec_host(name))


def hosts_by_name(client: SgeClient) -> dict[str, SgeHost]:
    return {h.name: h for h in run(client.hosts())}


def reporting(client: SgeClient, names: list[str]) -> dict[str, SgeHost] | None:
    hosts = hosts_by_name(client)
    return hosts if all(n in hosts and hosts[n].reachable for n in names) else None


def submit(base: Path, *args: str, seconds: int = 30) -> int:
    script = base / "sleep.sh"
    script.write_text(f"#!/bin/bash\nsleep {seconds}\n")
    out = sge("qsub", "-terse", "-o", "/dev/null", "-j", "y", *args, str(script))
    return int(out.strip().split(".")[0])


def test_ensure_exec_host_makes_members_report_with_capacity(cluster: tuple[SgeClient, list[str], Path]) -> None:
    client, names, _ = cluster
    for name in names:
        run(client.ensure_exec_host(name, 2, 1 << 30))
        run(client.ensure_exec_host(name, 2, 1 << 30))  # idempotent
    hosts = until("both members reporting", lambda: reporting(client, names))
    for name in names:
        assert hosts[name].static_cores == 2 and hosts[name].static_mem_bytes == 1 << 30
        assert hosts[name].slots_total == 2 and hosts[name].slots_used == 0
    # exec + submit hosts, not admin hosts: a job there cannot reconfigure SGE
    submit_hosts, admin_hosts = sge("qconf", "-ss").split(), sge("qconf", "-sh").split()
    assert all(name in submit_hosts and name not in admin_hosts for name in names), (submit_hosts, admin_hosts)
    # a capacity change is applied in place
    run(client.ensure_exec_host(names[1], 1, 512 << 20))
    changed = hosts_by_name(client)[names[1]]
    assert changed.static_cores == 1 and changed.static_mem_bytes == 512 << 20 and changed.slots_total == 1
    run(client.ensure_exec_host(names[1], 2, 1 << 30))


def test_jobs_fill_the_first_member_and_drain_primitives(cluster: tuple[SgeClient, list[str], Path]) -> None:
    client, names, base = cluster
    for name in names:
        run(client.ensure_exec_host(name, 2, 1 << 30))
    until("members reporting", lambda: reporting(client, names))
    first = submit(base, "-t", "1-2", "-l", "static_cores=1,static_mem=256M")
    running = until("2 tasks running", lambda: [j for j in run(client.jobs()) if j.job_id == first and j.running]
                    if len([j for j in run(client.jobs()) if j.job_id == first and j.running]) == 2 else None)
    # fill, not spread: both tasks share the first member while the second stays empty
    assert {j.host for j in running} == {names[0]}
    assert sorted(run(client.running_tasks_on(names[0]))) == [(first, 1), (first, 2)]
    assert run(client.running_tasks_on(names[1])) == []
    busy = hosts_by_name(client)[names[0]]
    assert busy.slots_used == 2 and busy.static_cores_free == 0 and busy.running_tasks == 2

    with pytest.raises(SgeError, match="jobs still run there"):
        run(client.remove_exec_host(names[0]))

    # a disabled member gets nothing new: the next job goes to the other one
    run(client.disable_host(names[0]))
    assert hosts_by_name(client)[names[0]].disabled
    run(client.enable_host(names[0]))
    run(client.disable_host(names[1]))
    pending = submit(base, "-l", "static_cores=1,static_mem=256M")  # the default 2G would never fit
    time.sleep(3)  # several scheduling intervals (1 s)
    (job,) = [j for j in run(client.jobs()) if j.job_id == pending]
    assert job.pending and not job.running
    run(client.enable_host(names[1]))
    until("job starts on the re-enabled member",
          lambda: any(j.job_id == pending and j.host == names[1] for j in run(client.jobs())))

    # reschedule puts a running task back to pending and it runs again
    run(client.reschedule(first, 1))
    # SGE marks a rescheduled task with R (Rq while it waits, Rr once it runs again)
    until("task 1 rescheduled", lambda: any(j.job_id == first and "R" in j.state for j in run(client.jobs())))
    for job_id in (first, pending):
        run(client.delete_job(job_id))
    until("jobs gone", lambda: not any(j.job_id in (first, pending) for j in run(client.jobs())))


def test_oversize_job_stays_pending_and_parses(cluster: tuple[SgeClient, list[str], Path]) -> None:
    client, names, base = cluster
    for name in names:
        run(client.ensure_exec_host(name, 2, 1 << 30))
    big = submit(base, "-l", "static_mem=8G", "-t", "1-100")
    time.sleep(3)
    (job,) = [j for j in run(client.jobs()) if j.job_id == big]
    assert job.pending and not job.error and job.requested_mem_bytes == 8 << 30
    assert job.pending_task_count == 100 and job.pending_tasks == ((1, 100, 1),)
    run(client.delete_job(big))


def test_errors_are_clear(cluster: tuple[SgeClient, list[str], Path]) -> None:
    client, _, _ = cluster
    with pytest.raises(SgeError, match="must be positive"):
        run(client.ensure_exec_host("bench-m09", 0, 1 << 30))
    with pytest.raises(SgeError) as raised:
        run(client.reschedule(999999))
    assert raised.value.stderr  # what SGE said is kept for the operator
    slow = SgeClient(timeout_s=0.001)
    with pytest.raises(SgeError, match="did not finish"):
        run(slow.jobs())
    missing = SgeClient(bin_dir=Path("/nonexistent"))
    with pytest.raises(SgeError, match="cannot run qstat"):
        run(missing.jobs())
