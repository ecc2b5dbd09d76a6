"""An executor slot: the SGE job that runs one Spark worker sized to one executor on a member.

SGE is the only allocator of a member's cores and memory: the manager submits a slot job per
executor an application wants, with `-l static_cores=C -l static_mem=M`, and only once SGE has
placed it does a worker of exactly C cores / M MiB register with the master, which then starts one
executor on it. SGE accounting (qstat/qacct) and Spark's REST API therefore agree by construction
and SGE tasks plus executors never exceed a member's usable capacity.

The slot supervises its worker (a worker killed by a signal is restarted, with backoff and a limit),
decommissions it when the member's queue is disabled (a drain or a spot notice: Spark stops giving
it tasks and lets running ones finish), and ends when its executor has gone (the application ended
or dynamic allocation released it) or when no executor came within `--unused-timeout`.

Usage (as an SGE job): python -m benchspark.slot --master spark://H:P --cores C --memory-mb M --app APP
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

POLL_S = 0.5
QUEUE_CHECK_S = 3.0
MAX_RESTARTS = 5
REGISTER_TIMEOUT_S = 180.0  # a JVM on a busy member can take a minute to start and register
REGISTERED = b"Successfully registered with master"
STOP_GRACE_S = 15.0


def log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} spark-slot: {message}", flush=True)


def spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def member_address() -> str:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def worker_argv(master: str, cores: int, memory_mb: int, host: str, work_dir: Path) -> list[str]:
    return [spark_class(), "org.apache.spark.deploy.worker.Worker", "--cores", str(cores),
            "--memory", f"{memory_mb}m", "--host", host, "--webui-port", "0", "--work-dir", str(work_dir),
            master]


def executor_processes(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, command line) of the executors the worker `pid` runs."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if any("CoarseGrainedExecutorBackend" in part for part in cmdline):
            found.append((child.pid, cmdline))
    return found


def executors_of(pid: int) -> int:
    return len(executor_processes(pid))


def _arg(cmdline: list[str], flag: str) -> str:
    return cmdline[cmdline.index(flag) + 1] if flag in cmdline[:-1] else ""


def queue_disabled(hostname: str) -> bool:
    """The member's SGE queue instance is disabled: a drain or a spot notice is under way."""
    try:
        out = subprocess.run(["qstat", "-f", "-q", f"all.q@{hostname}"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0].startswith("all.q@"):
            return len(parts) >= 6 and "d" in parts[5]
    return False


class Slot:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host = member_address()
        self.hostname = socket.gethostname() if args.queue_host is None else args.queue_host
        scratch = Path(os.environ.get("TMPDIR") or "/tmp")
        self.work_dir = scratch / "spark-work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "SPARK_LOCAL_DIRS": str(scratch / "spark-local"),
            "SPARK_WORKER_DIR": str(self.work_dir),
            "SPARK_LOG_DIR": str(scratch / "spark-logs"),
            "SPARK_LOCAL_IP": self.host,
            # SIGPWR decommissions the worker (and its executors) instead of killing it.
            # reverseProxy: the worker's UI is reached through the master under web access's /spark/
            # (issue 19), so its pages link their scripts and styles under that prefix.
            "SPARK_WORKER_OPTS": "-Dspark.decommission.enabled=true -Dspark.worker.cleanup.enabled=false "
                                 "-Dspark.ui.reverseProxy=true -Dspark.ui.reverseProxyUrl=/spark",
        })
        self.worker_log = scratch / "spark-worker.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.decommissioned = False
        self.stopping = False
        self.worker_registered = False
        self.signalled_executors: set[int] = set()

    def start_worker(self) -> None:
        argv = worker_argv(self.args.master, self.args.cores, self.args.memory_mb, self.host, self.work_dir)
        with self.worker_log.open("ab") as out:
            self.log_offset = out.tell()
            self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT)
        log(f"worker pid {self.proc.pid}: {self.args.cores} core(s) / {self.args.memory_mb} MiB on {self.host} "
            f"for {self.args.app}; its log: {self.worker_log}")

    def registered(self) -> bool:
        """The worker has registered with the master since it was (re)started."""
        try:
            with self.worker_log.open("rb") as fh:
                fh.seek(self.log_offset)
                return REGISTERED in fh.read()
        except OSError:
            return False

    def decommission(self, why: str) -> None:
        if self.decommissioned or self.proc is None or self.proc.poll() is not None:
            return
        self.decommissioned = True
        if not self.worker_registered:
            # Spark installs its SIGPWR handler while starting; before that SIGPWR would just kill the
            # JVM. A worker that has not registered runs no executor: stop it and end the slot.
            log(f"stopping the worker before it registered ({why}); slot ends")
            self.stopping = True
            return
        log(f"decommissioning the worker ({why}): no new tasks; running ones finish")
        self.proc.send_signal(signal.SIGPWR)

    def decommission_executors(self) -> None:
        """SIGPWR to each executor once its handler is in place (its log says so): it tells the driver,
        takes no new tasks, finishes its running ones and exits. The worker's own decommission reaches
        the driver through the master only for executors the driver already knew, so an executor
        that was starting meanwhile is covered here."""
        if self.proc is None:
            return
        for pid, cmdline in executor_processes(self.proc.pid):
            if pid in self.signalled_executors:
                continue
            stderr = self.work_dir / _arg(cmdline, "--app-id") / _arg(cmdline, "--executor-id") / "stderr"
            try:
                ready = b"Registering SIGPWR handler" in stderr.read_bytes()
            except OSError:
                ready = False
            if ready:
                try:
                    os.kill(pid, signal.SIGPWR)
                except ProcessLookupError:
                    continue
                self.signalled_executors.add(pid)
                log(f"decommissioning executor pid {pid}")

    def stop_worker(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def run(self) -> int:
        started = time.monotonic()
        had_executor = False
        last_busy = started
        registered_at: float | None = None
        next_queue_check = started
        self.start_worker()
        while not self.stopping:
            now = time.monotonic()
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                if code < 0 and not self.decommissioned and self.restarts < MAX_RESTARTS:
                    self.restarts += 1
                    delay = min(2.0 ** self.restarts, 10.0)
                    log(f"worker died from signal {-code}; restart {self.restarts}/{MAX_RESTARTS} in {delay:.0f} s")
                    time.sleep(delay)
                    self.start_worker()
                    had_executor, last_busy, registered_at = False, time.monotonic(), None
                    self.worker_registered = False
                    continue
                log(f"worker exited with status {code}; slot ends")
                return 0
            if registered_at is None and self.registered():
                registered_at = now
                self.worker_registered = True
                log("worker registered with the master")
            if self.decommissioned:
                self.decommission_executors()
            if executors_of(self.proc.pid):
                had_executor, last_busy = True, now
            elif had_executor and now - last_busy > self.args.idle_exit:
                log("the executor has gone (released or its application ended); slot ends")
                break
            elif not had_executor and registered_at is not None and now - registered_at > self.args.unused_timeout:
                log(f"no executor came within {self.args.unused_timeout:.0f} s; slot ends")
                break
            elif registered_at is None and now - last_busy > REGISTER_TIMEOUT_S:
                log(f"the worker did not register with {self.args.master} within {REGISTER_TIMEOUT_S:.0f} s "
                    f"(see {self.worker_log}); slot ends")
                break
            if self.hostname and now >= next_queue_check:
                next_queue_check = now + QUEUE_CHECK_S
                if queue_disabled(self.hostname):
                    self.decommission("the member's queue is disabled: drain or interruption")
            time.sleep(POLL_S)
        self.stop_worker()
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchspark.slot", description=__doc__.splitlines()[0])
    parser.add_argument("--master", required=True)
    parser.add_argument("--cores", type=int, required=True)
    parser.add_argument("--memory-mb", type=int, required=True)
    parser.add_argument("--app", default="")
    parser.add_argument("--unused-timeout", type=float, default=60.0)
    parser.add_argument("--idle-exit", type=float, default=3.0)
    parser.add_argument("--queue-host", help="SGE host whose queue state to follow (default: this host; '' = none)")
    args = parser.parse_args(argv)
    slot = Slot(args)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # qdel with -notify, or a node shutting down: give running tasks back first.
        slot.decommission(f"signal {signum}")

    signal.signal(signal.SIGUSR2, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return slot.run()


if __name__ == "__main__":
    sys.exit(main())
