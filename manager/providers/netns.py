"""Host-side network plumbing of the local cluster: the bridge, one network namespace + veth pair per
member, and the name → IP entries SGE needs on both sides. Blocking calls; async callers wrap them
in asyncio.to_thread. Every removal is idempotent so cleanup can run from any half-done state.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from manager.providers.local_config import (
    HOSTS_BEGIN,
    HOSTS_END,
    NETNS_PREFIX,
    LocalClusterConfig,
    MemberSlot,
)

COMMAND_TIMEOUT_S = 30.0
ETC_HOSTS = Path("/etc/hosts")
NETNS_ETC = Path("/etc/netns")


class NetworkError(Exception):
    pass


def run(cmd: list[str], *, check: bool = True,
        timeout_s: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def ensure_bridge(config: LocalClusterConfig) -> None:
    if not _link_exists(config.bridge):
        run(["ip", "link", "add", config.bridge, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", config.bridge]).stdout
    if f" {config.manager_ip}/" not in addrs:
        run(["ip", "addr", "add", f"{config.manager_ip}/24", "dev", config.bridge])
    run(["ip", "link", "set", config.bridge, "up"])


def remove_bridge(name: str) -> None:
    if _link_exists(name):
        run(["ip", "link", "del", name])


def _without_block(text: str) -> list[str]:
    kept: list[str] = []
    inside = False
    for line in text.splitlines():
        if line == HOSTS_BEGIN:
            inside = True
        elif line == HOSTS_END:
            inside = False
        elif not inside:
            kept.append(line)
    return kept


def write_hosts_block(lines: list[str], path: Path = ETC_HOSTS) -> bool:
    """Replace our marked block in a hosts file. Returns whether the file changed. Written in place
    (same inode) because /etc/hosts may be a bind mount."""
    old = path.read_text() if path.exists() else ""
    new = "\n".join([*_without_block(old), HOSTS_BEGIN, *lines, HOSTS_END]) + "\n"
    if new == old:
        return False
    with path.open("w") as handle:
        handle.write(new)
    return True


def remove_hosts_block(path: Path = ETC_HOSTS) -> bool:
    if not path.exists():
        return False
    old = path.read_text()
    kept = _without_block(old)
    new = "\n".join(kept) + "\n" if kept else ""
    if new == old:
        return False
    with path.open("w") as handle:
        handle.write(new)
    return True


def member_hosts_file(config: LocalClusterConfig, slot: MemberSlot) -> str:
    """The member's /etc/hosts (`ip netns exec` bind-mounts /etc/netns/<ns>/hosts over it)."""
    lines = [
        "127.0.0.1 localhost",
        f"{config.manager_ip} {config.manager_hostname}",
        *config.hosts_lines(),
        *config.extra_hosts,
    ]
    return "\n".join(lines) + "\n"


def create_member_netns(config: LocalClusterConfig, slot: MemberSlot) -> None:
    etc = NETNS_ETC / slot.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(member_hosts_file(config, slot))
    if slot.netns not in list_netns():
        run(["ip", "netns", "add", slot.netns])
    if not _link_exists(slot.host_veth):
        run(["ip", "link", "add", slot.host_veth, "type", "veth",
             "peer", "name", "eth0", "netns", slot.netns])
    run(["ip", "link", "set", slot.host_veth, "master", config.bridge, "up"])
    in_ns = ["ip", "-n", slot.netns]
    addrs = run([*in_ns, "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f" {slot.ip}/" not in addrs:
        run([*in_ns, "addr", "add", f"{slot.ip}/24", "dev", "eth0"])
    run([*in_ns, "link", "set", "eth0", "up"])
    run([*in_ns, "link", "set", "lo", "up"])


def delete_member_netns(netns: str, host_veth: str | None = None) -> None:
    if netns in list_netns():
        run(["ip", "netns", "del", netns])
    if host_veth:
        # deleting the namespace removes the pair asynchronously: a vanished link is fine
        run(["ip", "link", "del", host_veth], check=False)
    shutil.rmtree(NETNS_ETC / netns, ignore_errors=True)


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def our_netns() -> list[str]:
    return [name for name in list_netns() if name.startswith(NETNS_PREFIX)]


def our_veths() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2]
    return [n for n in names if n.startswith("bv") and n[2:].isdigit()]
