"""Init process of one local member: runs as PID 1 inside the member's namespaces.

Started by LocalProvider through `ip netns exec NS unshare --uts --mount --pid --fork ...`, in its
own session so it outlives the manager that created it. It gives the member its hostname, its own
/scratch (a loop-mounted ext4 image) and its own /data/mounts (a private directory), then supervises
`sge_execd` and `bench-agent`, restarting each with capped exponential backoff: execd keeps failing
until the manager has added this host to SGE, which happens only after the agent registered.
As PID 1 it also reaps orphaned job processes. SIGTERM stops everything and unmounts.

Usage: python -m manager.providers.local_member MEMBER_JSON
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from manager.providers import supervision
from manager.providers.supervision import Supervised

STOP_GRACE_S = 10.0
POLL_S = 0.2


def log(message: str) -> None:
    supervision.log(message, "local-member")


def mount(args: list[str]) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=60)


def unmount_tree(path: str) -> None:
    """Unmount `path` and everything below it (FUSE mounts under /data/mounts), deepest first."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted((m for m in mounts if m == path or m.startswith(path + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True, timeout=30)


def prepare_filesystems(spec: dict[str, str]) -> None:
    scratch = "/scratch"
    Path(scratch).mkdir(exist_ok=True)
    if spec["scratch_image"]:
        mount(["-o", "loop", spec["scratch_image"], scratch])
    else:
        Path(spec["private_scratch_dir"]).mkdir(parents=True, exist_ok=True)
        mount(["--bind", spec["private_scratch_dir"], scratch])
    mounts_dir = f"{spec['data_root']}/mounts"
    Path(mounts_dir).mkdir(parents=True, exist_ok=True)
    Path(spec["private_mounts_dir"]).mkdir(parents=True, exist_ok=True)
    mount(["--bind", spec["private_mounts_dir"], mounts_dir])


def reap(children: list[Supervised], now: float) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        for child in children:
            if child.pid == pid:
                child.exited(os.waitstatus_to_exitcode(status), now)


def stop_all(children: list[Supervised]) -> None:
    for child in children:
        if child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline and any(c.pid is not None for c in children):
        reap(children, time.monotonic())
        time.sleep(POLL_S)
    # PID 1 of a pid namespace: kill(-1) reaches every other process in it (jobs included).
    os.kill(-1, signal.SIGKILL)
    reap(children, time.monotonic())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m manager.providers.local_member MEMBER_JSON", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    socket.sethostname(spec["hostname"])
    prepare_filesystems(spec)
    log_dir = Path(spec["log_dir"])
    env = dict(os.environ)
    env.update({"SGE_ROOT": spec["sge_root"], "SGE_CELL": spec["sge_cell"], "HOSTNAME": spec["hostname"]})
    execd_env = dict(env, SGE_ND="1")  # keep execd in the foreground so we supervise it
    children = [
        Supervised("sge_execd", [spec["execd"]], execd_env, log_dir / "execd.log", who="local-member"),
        Supervised("bench-agent", list(spec["agent_command"]), env, log_dir / "agent.log", who="local-member"),
    ]
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    log(f"member {spec['node_id']} ({spec['hostname']} {spec['ip']}) up")
    while not stopping:
        now = time.monotonic()
        reap(children, now)
        for child in children:
            if child.due and now >= child.restart_at:
                child.start(now)
        time.sleep(POLL_S)
    log("stopping")
    stop_all(children)
    unmount_tree(f"{spec['data_root']}/mounts")
    unmount_tree("/scratch")
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
