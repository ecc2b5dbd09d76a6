"""Chaos soak: job arrays run all the time on a dynamic local cluster (min 0, max 4) while a seeded
random schedule kill -9s the manager, members' agents, mount workers and sge_execd, and sends spot
interruption notices. At the end: tasks submitted / finished ok / lost / run twice with different
results, members leaked, mounts left stale, queues left disabled, and the time to recover after each
kind of fault (p50 / max). The last line of the output is the summary as one JSON object.

    flock /tmp/bench-cluster.lock .venv/bin/python -m benchmarks.chaos --minutes 10 --seed 7

Needs root, SGE and a free machine (it starts its own cluster and always tears it down). Exit status 0
when the goal holds (0 lost, 0 leaked, 0 stale, 0 disabled), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks.chaos_report import Summary, leaked, parse_result, recovery_figures, task_outcomes
from manager.providers import local_processes
from manager.providers.local_config import LocalClusterConfig
from tests.e2e.cluster_helpers import qsub, sge
from tests.e2e.localcluster import LocalCluster, job_script, manager_process
from tests.harness import free_port
from tests.imds import MetadataServer

CLUSTER_ID = "local"
BRIDGE_IP = f"{LocalClusterConfig.__dataclass_fields__['subnet_prefix'].default}.1"
WORK = Path("/data/chaos")
SOURCE = Path("/data/chaos-src")
MOUNT = "/data/mounts/chaos"
RECOVERY_LIMIT_S = 120.0
SETTLE_LIMIT_S = 600.0
ARRAY_TASKS = 4
FAULT_GAP_S = (10.0, 25.0)
KINDS = ("manager", "agent", "execd", "mountworker", "spot")

TASK_BODY = """key="$JOB_ID.$SGE_TASK_ID"
sleep $(( (JOB_ID + SGE_TASK_ID) % 6 + 4 ))
body="$key $(printf '%s' "$key" | sha256sum | cut -c1-32)"
tmp="{results}/.$key.$(hostname).$$.tmp"
{{ printf '%s\\n' "$body"; printf '%s\\n' "$body" | sha256sum | cut -d' ' -f1; }} > "$tmp"
mv "$tmp" "{results}/$key.$(hostname).$$"
"""


def say(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", flush=True)


def wait_for(predicate: Callable[[], object], limit_s: float, interval_s: float = 0.5) -> float | None:
    """Seconds until `predicate` held, or None when it did not within `limit_s`."""
    start = time.monotonic()
    while time.monotonic() - start < limit_s:
        try:
            if predicate():
                return time.monotonic() - start
        except (psutil.Error, OSError, ValueError, KeyError):
            pass
        time.sleep(interval_s)
    return None


class Soak:
    def __init__(self, state_root: Path, seed: int, minutes: float) -> None:
        self.rng = random.Random(seed)
        self.seed, self.minutes = seed, minutes
        self.imds_port = free_port()
        self.cluster = LocalCluster(state_root, [
            "--mode", "dynamic", "--min", "0", "--max", "4", "--cores", "2", "--memory", "2G",
            "--scratch-size", "64M", "--allow-small-scratch", "--interval", "1", "--idle", "30", "--min-age", "20",
            "--no-spark", "--economy", "--spot-metadata-url", f"http://{BRIDGE_IP}:{self.imds_port}"])
        self.results = WORK / f"results-{seed}-{int(time.time())}"
        self.submitted: list[str] = []
        self.jobs: list[int] = []
        self.recovery: dict[str, list[float]] = {kind: [] for kind in KINDS}
        self.faults: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.failures: list[str] = []
        self.stop_submitting = threading.Event()

    # the cluster as the soak sees it ----------------------------------------------------------
    def members(self) -> dict[str, dict[str, str]]:
        return self.cluster.members(tolerate_unreachable=True)

    def ready(self) -> dict[str, dict[str, str]]:
        return {mid: m for mid, m in self.members().items() if m["state"] == "READY"}

    @staticmethod
    def children(member_id: str, needle: str) -> list[psutil.Process]:
        init = local_processes.member_init_pid(CLUSTER_ID, member_id)
        if init is None:
            return []
        found = []
        try:
            processes = psutil.Process(init).children(recursive=True)
        except psutil.Error:  # the member ended meanwhile (a spot interruption, a scale-in)
            return []
        for process in processes:
            try:  # a child may end (or be a zombie of a task just finished) while we look
                if needle in " ".join(process.cmdline()):
                    found.append(process)
            except psutil.Error:
                continue
        return found

    # work ---------------------------------------------------------------------------------------
    def submit_loop(self) -> None:
        script = job_script(WORK / "task.sh", TASK_BODY.format(results=self.results))
        while not self.stop_submitting.is_set():
            try:
                pending = sge("qstat", "-s", "p", check=False).stdout
                if sum(1 for job in self.jobs[-10:] if f" {job} " in f" {pending} ") < 2:
                    job = qsub("-t", f"1-{ARRAY_TASKS}", "-l", "static_cores=1,static_mem=256M",
                               "-o", "/dev/null", "-e", "/dev/null", str(script))
                    self.jobs.append(job)
                    self.submitted += [f"{job}.{task}" for task in range(1, ARRAY_TASKS + 1)]
            except Exception as exc:  # qsub refused for a moment: try again on the next round
                say(f"submission failed: {exc}")
            self.stop_submitting.wait(3.0)

    # faults -------------------------------------------------------------------------------------
    def fault(self, kind: str, imds: MetadataServer) -> float | None:
        """Inject one fault of `kind`; the seconds until the cluster recovered (None: it did not, or
        there was nothing to hit)."""
        if kind == "manager":
            manager_process(self.cluster.state_root).kill()
            return wait_for(lambda: self.cluster.ctl("cluster", "members", check=False).returncode == 0,
                            RECOVERY_LIMIT_S)
        ready = self.ready()
        if not ready:
            return None
        member_id = self.rng.choice(sorted(ready))
        member = ready[member_id]
        if kind == "spot":
            imds.announce("terminate", time.time() + 40, to_ip=member["ip"])
            took = wait_for(lambda: self.members().get(member_id, {}).get("state") in ("INTERRUPTED", "DRAINED",
                                                                                      "TERMINATED"), 30)
            imds.notices_by_ip.pop(member["ip"], None)  # the next member on this address is a new instance
            if took is None:
                return None
            return wait_for(lambda: self.members().get(member_id, {}).get("state") == "TERMINATED",
                            RECOVERY_LIMIT_S)
        needle = {"agent": "bench-agent", "execd": "sge_execd", "mountworker": "agent.fastmount.worker"}[kind]
        victims = [p for p in self.children(member_id, needle)
                   if kind != "agent" or "agent.fastmount.worker" not in " ".join(p.cmdline())]
        if not victims:
            return None
        victim = self.rng.choice(victims)
        victim.kill()
        if kind == "agent":
            return wait_for(lambda: any(p.pid != victim.pid for p in self.children(member_id, "bench-agent"))
                            and self.members().get(member_id, {}).get("state") == "READY", RECOVERY_LIMIT_S)
        if kind == "execd":
            return wait_for(lambda: any(p.pid != victim.pid for p in self.children(member_id, "sge_execd")),
                            RECOVERY_LIMIT_S)
        return wait_for(lambda: self.mount_readable(member["hostname"]), RECOVERY_LIMIT_S)

    def mount_readable(self, hostname: str) -> bool:
        proc = self.cluster.exec(hostname, "timeout", "10", "cat", f"{MOUNT}/input.txt")
        return proc.returncode == 0 and proc.stdout.strip() == "chaos input"

    def stale(self, member_id: str, hostname: str) -> bool:
        """The mount not readable on a member that is READY before and after the look (the scaler may
        start draining an idle member meanwhile, and a drain unmounts on purpose); looked at twice."""
        for attempt in range(2):
            if self.mount_readable(hostname):
                return False
            if attempt == 0:
                time.sleep(5)
        return self.members().get(member_id, {}).get("state") == "READY"

    # the end ------------------------------------------------------------------------------------
    def settle(self) -> None:
        def our_jobs_done() -> bool:
            listed = sge("qstat", "-u", "*", check=False).stdout
            return not any(f" {job} " in f" {listed} " for job in self.jobs)
        if wait_for(our_jobs_done, SETTLE_LIMIT_S, 2.0) is None:
            self.failures.append(f"jobs still queued or running after {SETTLE_LIMIT_S:.0f}s")

    def provider_ids(self) -> set[str]:
        ids = set()
        for member_json in (self.cluster.state_root / "members").glob("*/member.json"):
            node_id = json.loads(member_json.read_text())["node_id"]
            if local_processes.member_init_pid(CLUSTER_ID, node_id) is not None:
                ids.add(node_id)
        return ids

    def registry_ids(self) -> set[str]:
        return {mid for mid, m in self.members().items() if m["state"] != "TERMINATED"}

    def summary(self) -> Summary:
        results = [parse_result(p) for p in self.results.glob("*") if not p.name.startswith(".")]
        ok, twice, torn, lost = task_outcomes(self.submitted, results)
        wait_for(lambda: self.provider_ids() == self.registry_ids(), 90, 2.0)  # a drain may be finishing
        leaks = leaked(self.provider_ids(), self.registry_ids())
        ready = self.ready()
        stale = [m["hostname"] for mid, m in ready.items() if self.stale(mid, m["hostname"])]
        disabled = []
        for line in sge("qstat", "-f", check=False).stdout.splitlines():
            parts = line.split()
            host = parts[0].removeprefix("all.q@") if parts and parts[0].startswith("all.q@") else ""
            if host in {m["hostname"] for m in ready.values()} and len(parts) > 5 and "d" in parts[5]:
                disabled.append(host)
        return Summary(minutes=self.minutes, seed=self.seed, tasks_submitted=len(self.submitted), finished_ok=ok,
                       lost=len(lost), run_twice_different=twice, torn_results=torn, members_leaked=len(leaks),
                       mounts_stale=len(stale), queues_disabled=len(disabled), faults=self.faults,
                       recovery_s=recovery_figures(self.recovery),
                       details={"lost": lost[:50], "leaked": leaks, "stale": stale, "disabled": disabled,
                                "failures": self.failures})

    def run(self) -> Summary:
        WORK.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True)
        SOURCE.mkdir(parents=True, exist_ok=True)
        (SOURCE / "input.txt").write_text("chaos input\n")
        say("bringing the cluster up")
        self.cluster.up()
        try:
            with MetadataServer(host=BRIDGE_IP, port=self.imds_port) as imds:
                self.cluster.ctl("data", "create-mount", "--mount-path", MOUNT, "--source", str(SOURCE))
                submitter = threading.Thread(target=self.submit_loop, name="submitter", daemon=True)
                submitter.start()
                end = time.monotonic() + self.minutes * 60
                while time.monotonic() < end:
                    time.sleep(min(self.rng.uniform(*FAULT_GAP_S), max(end - time.monotonic(), 0)))
                    if time.monotonic() >= end:
                        break
                    kind = self.rng.choice(KINDS)
                    took = self.fault(kind, imds)
                    if took is None:
                        say(f"{kind}: nothing to hit or no recovery within {RECOVERY_LIMIT_S:.0f}s")
                        continue
                    self.faults[kind] += 1
                    self.recovery[kind].append(took)
                    say(f"{kind}: recovered in {took:.1f}s")
                self.stop_submitting.set()
                submitter.join(30)
                say(f"faults over; waiting for {len(self.jobs)} arrays to finish")
                self.settle()
                return self.summary()
        finally:
            self.stop_submitting.set()
            say("tearing the cluster down")
            self.cluster.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long faults arrive (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule (default 1)")
    parser.add_argument("--state-root", type=Path, help="the cluster's state root (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error("--minutes must be > 0")
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        summary = Soak(args.state_root or Path(tmp) / "state", args.seed, args.minutes).run()
    print("tasks submitted / finished ok / lost / run twice with different results: "
          f"{summary.tasks_submitted} / {summary.finished_ok} / {summary.lost} / {summary.run_twice_different}")
    print(f"members leaked {summary.members_leaked}, mounts stale {summary.mounts_stale}, "
          f"queues disabled {summary.queues_disabled}, torn result files {summary.torn_results}")
    for kind, figures in summary.recovery_s.items():
        print(f"recovery after {kind:<12} n={figures['n']:<3} "
              f"p50 {figures['p50_s']:6.1f}s  max {figures['max_s']:6.1f}s")
    print(json.dumps(summary.as_dict(), sort_keys=True))
    return 0 if summary.clean else 1


if __name__ == "__main__":
    sys.exit(main())
