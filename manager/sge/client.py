"""Async adapter over SGE's command-line tools, called by the manager's reconciler.

Every call is a subprocess with a timeout (killed when it expires), so a hung qmaster never blocks
the event loop; output is parsed by `manager.sge.parse`. Configuration changes are idempotent: each
one reads the current value first and changes only what differs.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from manager import unix_accounts
from manager.sge import parse
from manager.sge.model import SgeError, SgeHost, SgeJob
from manager.unix_accounts import Account

QUEUE = "all.q"
HOSTGROUP = "@allhosts"
BIN_DIR = Path("/usr/lib/gridengine")
MAX_PARALLEL_QCONF = 8
# qconf -Ae wants every attribute, not just the ones we set.
EXECHOST_TEMPLATE = """hostname {hostname}
load_scaling NONE
complex_values {values}
user_lists NONE
xuser_lists NONE
projects NONE
xprojects NONE
usage_scaling NONE
report_variables NONE
"""


class SgeClient:
    def __init__(self, sge_root: str | Path = "/var/lib/gridengine", cell: str = "default",
                 timeout_s: float = 30.0, bin_dir: Path = BIN_DIR) -> None:
        self.sge_root = str(sge_root)
        self.cell = cell
        self.timeout_s = timeout_s
        self.bin_dir = bin_dir
        self._config_lock = asyncio.Lock()  # qconf edits of shared objects (queue, hostgroup) one at a time

    async def _run(self, tool: str, *args: str, check: bool = True,
                   as_account: Account | None = None) -> tuple[int, str, str]:
        env = dict(os.environ, SGE_ROOT=self.sge_root, SGE_CELL=self.cell)
        prefix = unix_accounts.run_as_prefix(as_account) if as_account else []
        try:
            proc = await asyncio.create_subprocess_exec(
                *prefix, str(self.bin_dir / tool), *args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except OSError as exc:
            raise SgeError(f"cannot run {tool} (is gridengine-client installed?)", str(exc)) from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SgeError(f"{tool} {' '.join(args)} did not finish within {self.timeout_s:.0f} s "
                           "(is sge_qmaster running?)") from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        code = proc.returncode if proc.returncode is not None else -1
        if check and code != 0:
            raise SgeError(f"{tool} {' '.join(args)} failed with exit status {code}", stderr or stdout)
        return code, stdout, stderr

    # --- observation ---------------------------------------------------------------------------

    async def jobs(self) -> list[SgeJob]:
        """Running tasks and pending jobs of every user."""
        _, out, _ = await self._run("qstat", "-u", "*", "-xml", "-r")
        return parse.parse_qstat_jobs(out)

    async def running_tasks_on(self, hostname: str) -> list[tuple[int, int | None]]:
        return [(job.job_id, job.task_id) for job in await self.jobs() if job.host == hostname]

    async def exec_host_names(self) -> list[str]:
        code, out, _ = await self._run("qconf", "-sel", check=False)
        return out.split() if code == 0 else []  # exit 1 with "no execution host defined"

    async def _complex_values(self, hostname: str) -> dict[str, str]:
        code, out, _ = await self._run("qconf", "-se", hostname, check=False)
        return parse.parse_complex_values(out) if code == 0 else {}

    async def hosts(self) -> list[SgeHost]:
        (_, qhost_xml, _), (code, queues_xml, err) = await asyncio.gather(
            self._run("qhost", "-xml", "-F", "static_cores,static_mem"),
            self._run("qstat", "-f", "-u", "*", "-xml", "-q", QUEUE, check=False))
        if code != 0 and (queues_xml.strip() or err.strip()):
            raise SgeError(f"qstat -f failed with exit status {code}", err or queues_xml)
        # exit 1 with no output at all: the queue has no instances yet (no exec hosts)
        instances = {qi.host: qi for qi in parse.parse_queue_instances(queues_xml)} if code == 0 else {}
        entries = parse.parse_qhost(qhost_xml)
        limit = asyncio.Semaphore(MAX_PARALLEL_QCONF)

        async def configured(name: str) -> dict[str, str]:
            async with limit:
                return await self._complex_values(name)

        complexes = await asyncio.gather(*(configured(e.name) for e in entries))
        hosts = []
        for entry, values in zip(entries, complexes, strict=True):
            qi = instances.get(entry.name)
            state = qi.state if qi else ""
            cores = values.get("static_cores")
            mem = values.get("static_mem")
            hosts.append(SgeHost(
                name=entry.name,
                reachable=entry.load_reported and qi is not None and "u" not in state,
                static_cores=int(float(cores)) if cores else None,
                static_mem_bytes=parse.parse_memory(mem) if mem else None,
                static_cores_free=entry.static_cores_free,
                static_mem_free_bytes=entry.static_mem_free_bytes,
                slots_used=qi.slots_used if qi else 0,
                slots_total=qi.slots_total if qi else 0,
                running_tasks=qi.running_tasks if qi else 0,
                queue_state=state,
            ))
        return hosts

    # --- configuration -------------------------------------------------------------------------

    async def _load_file(self, flag: str, name: str, text: str) -> None:
        with tempfile.TemporaryDirectory(prefix="bench-sge-") as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            await self._run("qconf", flag, str(path))

    async def _queue_setting(self, key: str) -> tuple[str, dict[str, str]]:
        _, out, _ = await self._run("qconf", "-sq", QUEUE)
        joined = out.replace("\\\n", " ")
        for line in joined.splitlines():
            if line.startswith(key + " ") or line.startswith(key + "\t"):
                return parse.parse_host_list_setting(line[len(key):].strip())
        return "", {}

    async def ensure_exec_host(self, hostname: str, static_cores: int, static_mem_bytes: int) -> None:
        """Make `hostname` an exec host offering `static_cores` cores (= slots) and `static_mem_bytes`,
        in the cluster queue, after any hosts already there (the scheduler fills hosts in this
        order). Idempotent; safe to call again with new capacity."""
        if static_cores < 1 or static_mem_bytes < 1:
            raise SgeError(f"refusing to configure {hostname} with {static_cores} cores and "
                           f"{static_mem_bytes} bytes: both must be positive")
        values = (f"slots={static_cores},static_cores={static_cores},"
                  f"static_mem={parse.format_memory(static_mem_bytes)}")
        async with self._config_lock:
            # A submit host, never an admin host: execd fetches its configuration from a submit host just
            # as well, and an admin host lets anyone with an account there change SGE's configuration.
            _, submit, _ = await self._run("qconf", "-ss", check=False)
            if hostname not in submit.split():
                await self._run("qconf", "-as", hostname)
            if hostname in await self.exec_host_names():
                current = await self._complex_values(hostname)
                wanted = dict(item.split("=", 1) for item in values.split(","))
                if {k: current.get(k) for k in wanted} != wanted:
                    await self._run("qconf", "-rattr", "exechost", "complex_values", values, hostname)
            else:
                await self._load_file("-Ae", "exechost", EXECHOST_TEMPLATE.format(hostname=hostname, values=values))
            _, group, _ = await self._run("qconf", "-shgrp", HOSTGROUP)
            if hostname not in group.replace("\\", " ").split():
                await self._run("qconf", "-aattr", "hostgroup", "hostlist", hostname, HOSTGROUP)
            _, slots = await self._queue_setting("slots")
            if slots.get(hostname) != str(static_cores):
                await self._run("qconf", "-mattr", "queue", "slots", str(static_cores), f"{QUEUE}@{hostname}")
            _, seq = await self._queue_setting("seq_no")
            if hostname not in seq:
                next_seq = max((int(v) for v in seq.values() if v.isdigit()), default=0) + 1
                await self._run("qconf", "-mattr", "queue", "seq_no", str(next_seq), f"{QUEUE}@{hostname}")

    async def disable_host(self, hostname: str) -> None:
        await self._run("qmod", "-d", f"{QUEUE}@{hostname}")

    async def enable_host(self, hostname: str) -> None:
        await self._run("qmod", "-e", f"{QUEUE}@{hostname}")

    async def reschedule(self, job_id: int, task_id: int | None = None) -> None:
        target = str(job_id) if task_id is None else f"{job_id}.{task_id}"
        await self._run("qmod", "-rj", target)

    async def delete_job(self, job_id: int, *, force: bool = False) -> None:
        """qdel; `force` also forgets jobs whose exec host is gone (qdel -f)."""
        await self._run("qdel", *(["-f"] if force else []), str(job_id))

    async def submit(self, args: list[str], *, as_account: Account | None = None) -> int:
        """qsub with `-terse` among `args`; the job id. With `as_account` the job is that user's (it runs with
        their ids and SGE accounts it to them), not the manager's."""
        _, out, _ = await self._run("qsub", *args, as_account=as_account)
        try:
            return int(out.strip().split(".")[0])
        except ValueError:
            raise SgeError("qsub printed no job id", out) from None

    async def delete_tasks(self, job_id: int, tasks: list[int]) -> None:
        """qdel of some array tasks (all of the job when `tasks` is empty)."""
        for task in tasks or [0]:
            args = [str(job_id)] + (["-t", str(task)] if task else [])
            await self._run("qdel", *args, check=False)

    async def remove_exec_host(self, hostname: str) -> None:
        """Take the host out of SGE entirely. Refuses while jobs run there; idempotent."""
        running = await self.running_tasks_on(hostname)
        if running:
            listed = ", ".join(f"{j}" if t is None else f"{j}.{t}" for j, t in running)
            raise SgeError(f"cannot remove exec host {hostname}: jobs still run there ({listed}); "
                           "drain it first (disable, wait or reschedule)")
        async with self._config_lock:
            _, group, _ = await self._run("qconf", "-shgrp", HOSTGROUP, check=False)
            for key in ("slots", "seq_no"):
                _, overrides = await self._queue_setting(key)
                if hostname in overrides:
                    await self._run("qconf", "-purge", "queue", key, f"{QUEUE}@{hostname}")
            if hostname in group.replace("\\", " ").split():
                await self._run("qconf", "-dattr", "hostgroup", "hostlist", hostname, HOSTGROUP)
            if hostname in await self.exec_host_names():
                await self._run("qconf", "-de", hostname)
            _, submit, _ = await self._run("qconf", "-ss", check=False)
            if hostname in submit.split():
                await self._run("qconf", "-ds", hostname)
            _, admin, _ = await self._run("qconf", "-sh", check=False)
            if hostname in admin.split():
                await self._run("qconf", "-dh", hostname)
