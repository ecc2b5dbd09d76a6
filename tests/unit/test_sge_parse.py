"""Parsing of real SGE 8.1.9 output captured from the local cluster (tests/fixtures/sge/).

The fixtures came from two 2-core members running: job 1 an array 1-40 with static_cores=1 and
static_mem=512M, job 2 held with -h, job 3 a plain job with static_mem=1G, job 4 an array 5-9:2
with -hold_jid 3, job 5 with a missing working directory (goes to Eqw), job 6 wanting 100G.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.sge.model import SgeError, SgeJob, range_task_count
from manager.sge.parse import (
    format_memory,
    parse_complex_values,
    parse_host_list_setting,
    parse_memory,
    parse_qhost,
    parse_qstat_jobs,
    parse_queue_instances,
    parse_task_ranges,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "sge"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def by_id(jobs: list[SgeJob], job_id: int) -> list[SgeJob]:
    return [j for j in jobs if j.job_id == job_id]


def test_running_tasks_carry_host_task_and_requests() -> None:
    jobs = parse_qstat_jobs(fixture("qstat_running_pending_held_dep.xml"))
    running = [j for j in jobs if j.running]
    assert [(j.job_id, j.task_id, j.host) for j in running] == [
        (1, 1, "bench-m01"), (1, 2, "bench-m01"), (1, 3, "bench-m02"), (1, 4, "bench-m02")]
    assert all(j.requested_cores == 1 and j.requested_mem_bytes == 512 * 2**20 for j in running)
    assert all(not j.pending and j.pending_task_count == 0 for j in running)


def test_pending_array_keeps_ranges_unexpanded() -> None:
    jobs = parse_qstat_jobs(fixture("qstat_running_pending_held_dep.xml"))
    (pending,) = [j for j in by_id(jobs, 1) if j.pending]
    assert pending.pending_tasks == ((5, 40, 1),)
    assert pending.pending_task_count == 36
    assert pending.host is None and pending.task_id is None and pending.is_array


def test_unrequested_resources_are_none_and_plain_job_counts_one() -> None:
    jobs = parse_qstat_jobs(fixture("qstat_running_pending_held_dep.xml"))
    (single,) = by_id(jobs, 3)
    assert single.requested_cores is None
    assert single.requested_mem_bytes == 2**30
    assert single.pending_task_count == 1 and not single.is_array
    (big,) = by_id(jobs, 6)
    assert big.requested_mem_bytes == 100 * 2**30 and not big.held and not big.error


def test_held_and_dependency_waiting_jobs() -> None:
    jobs = parse_qstat_jobs(fixture("qstat_running_pending_held_dep.xml"))
    (held,) = by_id(jobs, 2)
    assert held.state == "hqw" and held.held and not held.waiting_on_dependency
    assert held.requested_cores == 2
    (dep,) = by_id(jobs, 4)
    assert dep.state == "hqw" and dep.predecessors == (3,) and dep.waiting_on_dependency
    assert dep.pending_tasks == ((5, 9, 2),) and dep.pending_task_count == 3


def test_error_state_and_released_dependency() -> None:
    jobs = parse_qstat_jobs(fixture("qstat_eqw_dep_released.xml"))
    (err,) = by_id(jobs, 5)
    assert err.state == "Eqw" and err.error and err.pending and not err.running
    dep = by_id(jobs, 4)
    assert {(j.task_id, j.host) for j in dep if j.running} == {(5, "bench-m01"), (7, "bench-m02")}
    (rest,) = [j for j in dep if j.pending]
    assert rest.pending_tasks == ((9, 9, 1),) and rest.predecessors == ()


def test_qhost_skips_global_and_reads_free_consumables() -> None:
    hosts = parse_qhost(fixture("qhost_two_members_busy.xml"))
    assert [h.name for h in hosts] == ["bench-m01", "bench-m02"]
    assert all(h.load_reported for h in hosts)
    assert all(h.static_cores_free == 0 and h.static_mem_free_bytes == 2**30 for h in hosts)


def test_queue_instances_show_slots_and_disabled_state() -> None:
    busy = {q.host: q for q in parse_queue_instances(fixture("qstat_f_two_members_busy.xml"))}
    assert busy["bench-m01"].slots_used == 2 and busy["bench-m01"].slots_total == 2
    assert busy["bench-m01"].running_tasks == 2 and busy["bench-m01"].state == ""
    one_off = {q.host: q for q in parse_queue_instances(fixture("qstat_f_one_disabled.xml"))}
    assert one_off["bench-m02"].state == "d" and one_off["bench-m01"].state == ""


def test_exec_host_complex_values() -> None:
    values = parse_complex_values(fixture("qconf_se_member.txt"))
    assert values == {"static_cores": "2", "static_mem": "2G", "slots": "2"}
    assert parse_complex_values("hostname x\ncomplex_values NONE\n") == {}


def test_queue_per_host_settings() -> None:
    text = fixture("qconf_sq_allq.txt")
    slots_line = next(line for line in text.splitlines() if line.startswith("slots"))
    default, per_host = parse_host_list_setting(slots_line.split(None, 1)[1])
    assert default == "1" and per_host == {"bench-m01": "2", "bench-m02": "2"}


@pytest.mark.parametrize(("text", "expected"), [
    ("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.000G", 2**30), ("1.5G", 3 * 2**29),
    ("100k", 100_000), ("3", 3), ("1T", 2**40), ("2g", 2_000_000_000),
])
def test_memory_values(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_memory_round_trip_and_rejects_garbage() -> None:
    for size in (2**30, 512 * 2**20, 3 * 2**40, 1234567):
        assert parse_memory(format_memory(size)) == size
    with pytest.raises(ValueError, match="not an SGE memory value"):
        parse_memory("lots")


def test_task_ranges() -> None:
    assert parse_task_ranges("1,3,5-9:2") == ((1, 1, 1), (3, 3, 1), (5, 9, 2))
    assert [range_task_count(r) for r in parse_task_ranges("1-100:1,200-210:5")] == [100, 3]
    with pytest.raises(ValueError):
        parse_task_ranges("a-b")


def test_bad_xml_is_an_sge_error() -> None:
    with pytest.raises(SgeError, match="could not parse qstat XML"):
        parse_qstat_jobs("<job_info><unterminated>")


def test_a_job_name_with_markup_reads_as_submitted() -> None:
    # what qstat -u '*' -xml -r printed for `qsub -h -N '<b>alert(1)<b>'` (Grid Engine 8.1.9)
    xml = ("<?xml version='1.0'?><job_info><queue_info></queue_info><job_info>"
           "<job_list state=\"pending\"><JB_job_number>284</JB_job_number>"
           "<JB_name>%lt;b&gt;alert(1)%lt;b&gt;</JB_name><JB_owner>root</JB_owner><state>hqw</state>"
           "</job_list></job_info></job_info>")
    (job,) = parse_qstat_jobs(xml)
    assert job.name == "<b>alert(1)<b>" and job.held
