"""Parsers for SGE 8.1.9 output (`qstat -xml -r`, `qhost -xml -F`, `qstat -f -xml`, `qconf -se`).

Pure functions over text: no subprocesses, so they are tested on real output captured from the
local cluster (tests/fixtures/sge/).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from manager.sge.model import SgeError, SgeJob, TaskRange

# SGE memory suffixes: lower case are powers of 1000, upper case powers of 1024.
_MEMORY_FACTORS = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
                   "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_MEMORY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgtKMGT]?)\s*$")
_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$")


def parse_memory(text: str) -> int:
    match = _MEMORY.match(text)
    if match is None:
        raise ValueError(f"not an SGE memory value: {text!r}")
    number, suffix = match.groups()
    return round(float(number) * _MEMORY_FACTORS.get(suffix, 1))


def format_memory(size_bytes: int) -> str:
    """The shortest exact SGE spelling (2147483648 → 2G)."""
    for suffix in ("T", "G", "M", "K"):
        factor = _MEMORY_FACTORS[suffix]
        if size_bytes >= factor and size_bytes % factor == 0:
            return f"{size_bytes // factor}{suffix}"
    return str(size_bytes)


def parse_task_ranges(text: str) -> tuple[TaskRange, ...]:
    """`5-40:1`, `7`, `1,3,5-9:2` → ((5, 40, 1),), ((7, 7, 1),), ((1,1,1),(3,3,1),(5,9,2))."""
    ranges: list[TaskRange] = []
    for part in text.split(","):
        match = _RANGE.match(part.strip())
        if match is None:
            raise ValueError(f"not an SGE task range: {text!r}")
        start = int(match.group(1))
        stop = int(match.group(2) or start)
        step = int(match.group(3) or 1)
        ranges.append((start, stop, step))
    return tuple(ranges)


def _root(xml_text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise SgeError(f"could not parse {what} XML ({exc})", xml_text[:500]) from exc


def _text(element: ET.Element, tag: str) -> str:
    found = element.find(tag)
    return (found.text or "").strip() if found is not None else ""


def _job_name(element: ET.Element) -> str:
    # Grid Engine 8.1's qstat -xml writes '<' in a job name as "%lt;" (not "&lt;"; '>' and '&' come
    # out right): seen with `qsub -N '<b>x<b>'`. Undone here so the name reads as submitted.
    return _text(element, "JB_name").replace("%lt;", "<")


def _job(element: ET.Element) -> SgeJob:
    requests = {req.get("name"): (req.text or "").strip() for req in element.findall("hard_request")}
    cores = requests.get("static_cores")
    mem = requests.get("static_mem")
    queue = _text(element, "queue_name")
    tasks = _text(element, "tasks")
    running = element.get("state") == "running"
    predecessors = tuple(int(p.text) for p in element.findall("predecessor_jobs")
                         if p.text and p.text.isdigit())
    return SgeJob(
        job_id=int(_text(element, "JB_job_number")),
        name=_job_name(element),
        owner=_text(element, "JB_owner"),
        state=_text(element, "state"),
        requested_cores=int(float(cores)) if cores else None,
        requested_mem_bytes=parse_memory(mem) if mem else None,
        pending_tasks=parse_task_ranges(tasks) if tasks and not running else (),
        predecessors=predecessors,
        host=queue.split("@", 1)[1] if running and "@" in queue else None,
        task_id=int(tasks) if running and tasks.isdigit() else None,
    )


def parse_qstat_jobs(xml_text: str) -> list[SgeJob]:
    """`qstat -u '*' -xml -r`: running tasks (queue_info) then pending jobs (job_info)."""
    root = _root(xml_text, "qstat")
    return [_job(element) for element in root.iter("job_list")]


@dataclass(frozen=True)
class QhostEntry:
    name: str
    load_reported: bool
    static_cores_free: int | None
    static_mem_free_bytes: int | None


def parse_qhost(xml_text: str) -> list[QhostEntry]:
    """`qhost -xml -F static_cores,static_mem`; the pseudo host `global` is skipped."""
    entries = []
    for host in _root(xml_text, "qhost").findall("host"):
        name = host.get("name", "")
        if name == "global":
            continue
        values = {v.get("name"): (v.text or "").strip() for v in host.findall("hostvalue")}
        resources = {r.get("name"): (r.text or "").strip() for r in host.findall("resourcevalue")}
        cores = resources.get("static_cores")
        mem = resources.get("static_mem")
        entries.append(QhostEntry(
            name=name,
            load_reported=values.get("load_avg", "-") not in ("-", ""),
            static_cores_free=int(float(cores)) if cores else None,
            static_mem_free_bytes=parse_memory(mem) if mem else None,
        ))
    return entries


@dataclass(frozen=True)
class QueueInstance:
    queue: str
    host: str
    slots_used: int
    slots_total: int
    state: str
    running_tasks: int


def parse_queue_instances(xml_text: str) -> list[QueueInstance]:
    """`qstat -f -u '*' -xml`: one Queue-List per queue instance with its running job_list."""
    instances = []
    for element in _root(xml_text, "qstat -f").iter("Queue-List"):
        queue, _, host = _text(element, "name").partition("@")
        instances.append(QueueInstance(
            queue=queue, host=host,
            slots_used=int(_text(element, "slots_used") or 0),
            slots_total=int(_text(element, "slots_total") or 0),
            state=_text(element, "state"),
            running_tasks=len(element.findall("job_list")),
        ))
    return instances


def parse_complex_values(exechost_text: str) -> dict[str, str]:
    """The `complex_values` line of `qconf -se HOST` (continuation lines joined)."""
    joined = exechost_text.replace("\\\n", " ")
    for line in joined.splitlines():
        if line.startswith("complex_values"):
            value = "".join(line.split()[1:])
            if value == "NONE":
                return {}
            pairs = (item.split("=", 1) for item in value.split(",") if "=" in item)
            return {key: val for key, val in pairs}
    return {}


def parse_host_list_setting(value: str) -> tuple[str, dict[str, str]]:
    """A queue attribute with per-host overrides, e.g. `1,[bench-m01=2],[bench-m02=2]` →
    ("1", {"bench-m01": "2", "bench-m02": "2"})."""
    default, overrides = "", {}
    for part in re.findall(r"\[[^\]]*\]|[^,\[\]\s]+", value):
        if part.startswith("["):
            host, _, val = part[1:-1].partition("=")
            overrides[host.strip()] = val.strip()
        else:
            default = part
    return default, overrides
