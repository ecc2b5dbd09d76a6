"""How long one autoscaler decision takes on a big queue, against the time to merely read that queue.

Scenario (issue 5): 10k pending jobs holding 1M array tasks, 50 members. A `qstat -u '*' -xml -r`
document of that size (modelled on real SGE 8.1.9 output in tests/fixtures/sge/) is generated in
memory; the baseline is parsing it with xml.etree.ElementTree into the planner's Snapshot (the real
adapter is manager/sge; this parser stays here so the benchmark measures only XML → snapshot). Then
one `plan()` call on that snapshot is timed, and the ratio printed. A second plan on the same jobs
with one task each shows that planning cost does not grow with the number of array tasks.

    .venv/bin/python benchmarks/autoscaler.py [--jobs 10000] [--tasks 1000000] [--members 50]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from manager.autoscaler import MemberView, PendingJob, ScalerConfig, Snapshot, plan
from manager.autoscaler.model import usable_capacity

GIB = 1024**3
NOW = 1_764_057_600.0
SUFFIX = {"K": 1024, "M": 1024**2, "G": GIB, "T": 1024**4}
SHAPES = [(1, None), (1, "512M"), (1, "1G"), (2, "4G"), (4, "8G"), (None, "2G"), (2, None), (6, "16G")]
T = TypeVar("T")


def job_list(state: str, job_id: int, sge_state: str, cores: int | None, memory: str | None,
             tasks: str | None, queue: str = "", predecessor: int | None = None) -> str:
    requests = "".join(
        f'      <hard_request name="{name}" resource_contribution="0.000000">{value}</hard_request>\n'
        for name, value in (("static_cores", cores), ("static_mem", memory)) if value is not None
    )
    return (
        f'    <job_list state="{state}">\n'
        f"      <JB_job_number>{job_id}</JB_job_number>\n"
        f"      <JAT_prio>0.50000</JAT_prio>\n"
        f"      <JB_name>job{job_id}</JB_name>\n"
        f"      <JB_owner>user{job_id % 7}</JB_owner>\n"
        f"      <state>{sge_state}</state>\n"
        f"      <JB_submission_time>2026-11-25T07:05:45</JB_submission_time>\n"
        f"      <queue_name>{queue}</queue_name>\n"
        f"      <slots>1</slots>\n"
        + (f"      <tasks>{tasks}</tasks>\n" if tasks else "")
        + f"      <full_job_name>job{job_id}</full_job_name>\n"
        + requests
        + (f"      <predecessor_jobs_req>{predecessor}</predecessor_jobs_req>\n"
           f"      <predecessor_jobs>{predecessor}</predecessor_jobs>\n" if predecessor else "")
        + "      <binding>NONE</binding>\n    </job_list>\n"
    )


def qstat_xml(jobs: int, tasks: int, members: int, rng: random.Random) -> str:
    """Running tasks on every member, then `jobs` pending jobs whose array ranges hold `tasks` tasks."""
    running = [
        job_list("running", 1, "r", 1, "1G", str(task), queue=f"all.q@bench-m{host:02d}")
        for host in range(1, members + 1) for task in range(1, 4)
    ]
    pending = []
    per_job, extra = divmod(tasks, jobs)
    for index in range(jobs):
        job_id = 100 + index
        count = per_job + (1 if index < extra else 0)
        cores, memory = SHAPES[index % len(SHAPES)]
        if index % 200 == 0:
            cores = 64  # oversize (0.5% of jobs): must be ignored, never scaled for
        roll = rng.random()
        state, predecessor = "qw", None
        if roll < 0.03:
            state = "hqw"
        elif roll < 0.05:
            state, predecessor = "hqw", job_id - 1
        elif roll < 0.06:
            state = "Eqw"
        ranges = f"1-{count}:1" if count > 1 else None
        pending.append(job_list("pending", job_id, state, cores, memory, ranges, predecessor=predecessor))
    return (
        "<?xml version='1.0'?>\n"
        '<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/'
        'qstat/qstat.xsd">\n  <queue_info>\n' + "".join(running) + "  </queue_info>\n  <job_info>\n"
        + "".join(pending) + "  </job_info>\n</job_info>\n"
    )


def size(text: str) -> int:
    return int(float(text[:-1]) * SUFFIX[text[-1]]) if text[-1] in SUFFIX else int(text)


def parse_snapshot(xml_text: str, config: ScalerConfig, members: int) -> Snapshot:
    """The baseline: qstat XML → Snapshot (pending jobs with requests and ranges, members' load)."""
    root = ET.fromstring(xml_text)
    cores_cap, memory_cap = usable_capacity(config)
    used: dict[str, list[int]] = {f"bench-m{h:02d}": [0, 0, 0] for h in range(1, members + 1)}
    pending = []
    for entry in root.iter("job_list"):
        requests = {r.get("name"): r.text or "" for r in entry.findall("hard_request")}
        cores = int(requests["static_cores"]) if "static_cores" in requests else None
        memory = size(requests["static_mem"]) if "static_mem" in requests else None
        if entry.get("state") == "running":
            host = (entry.findtext("queue_name") or "").split("@")[-1]
            load = used[host]
            load[0] += cores or 1
            load[1] += memory or 2 * GIB
            load[2] += 1
            continue
        state = entry.findtext("state") or ""
        ranges: tuple[tuple[int, int, int], ...] = ()
        tasks_text = entry.findtext("tasks")
        if tasks_text:
            span, _, step = tasks_text.partition(":")
            start, _, stop = span.partition("-")
            ranges = ((int(start), int(stop or start), int(step or 1)),)
        pending.append(PendingJob.from_request(
            int(entry.findtext("JB_job_number") or 0), cores=cores, memory_bytes=memory,
            name=entry.findtext("JB_name") or "", owner=entry.findtext("JB_owner") or "", task_ranges=ranges,
            held="h" in state and entry.find("predecessor_jobs_req") is None,
            waiting_on_dependency=entry.find("predecessor_jobs_req") is not None, error="E" in state,
        ))
    views = tuple(
        MemberView(host, "READY", cores_cap, memory_cap, cores_cap - c, memory_cap - m, running_jobs=n,
                   joined_at=NOW - 3600, idle_since=None if n else NOW - 600, in_sge=True)
        for host, (c, m, n) in used.items()
    )
    return Snapshot(members=views, pending=tuple(pending))


def timed(action: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of `repeat` runs (seconds; the least disturbed by other load) and the result."""
    times = []
    result: T | None = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    assert result is not None
    return min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not (1 <= args.jobs <= args.tasks and 1 <= args.members <= 1000 and 1 <= args.repeat <= 100):
        parser.error("need 1 <= jobs <= tasks, 1 <= members <= 1000, 1 <= repeat <= 100")

    config = ScalerConfig(mode="dynamic", member_cores=8, member_memory_bytes=32 * GIB,
                          min_members=0, max_members=min(args.members, 50), hard_limit=max(50, args.members))
    xml_text = qstat_xml(args.jobs, args.tasks, args.members, random.Random(5))
    parse_s, snapshot = timed(lambda: parse_snapshot(xml_text, config, args.members), args.repeat)
    plan_s, decision = timed(lambda: plan(snapshot, config, NOW), args.repeat)
    # Same jobs and ranges, one task per range: only the number of tasks differs.
    single = replace(snapshot, pending=tuple(replace(j, task_ranges=((1, 1, 1),)) for j in snapshot.pending))
    single_s, _ = timed(lambda: plan(single, config, NOW), args.repeat)

    print(f"snapshot: {args.jobs} pending jobs, {sum(j.tasks for j in snapshot.pending)} tasks, "
          f"{args.members} members; qstat XML {len(xml_text) / 1024**2:.1f} MiB")
    print(f"decision: {decision.action}, +{decision.add_count}, needed {decision.needed_members}, "
          f"{len(decision.ignored)} jobs ignored, "
          f"{sum(len(ids) for ids in decision.not_demand.values())} jobs not demand")
    print(f"baseline  parse qstat XML -> snapshot : {parse_s * 1000:9.2f} ms (best of {args.repeat})")
    print(f"plan() on the snapshot               : {plan_s * 1000:9.2f} ms")
    print(f"plan() on the same jobs, 1 task each : {single_s * 1000:9.2f} ms")
    print(f"ratio plan / parse                   : {plan_s / parse_s:9.3f}")
    print(f"ratio plan(all tasks) / plan(1 each) : {plan_s / single_s:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
