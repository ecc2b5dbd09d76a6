"""Capabilities of a mount worker: everything the agent's root has until the mount is up, then only what
serving needs (the worker reads sources on behalf of every user: CAP_DAC_READ_SEARCH; the native
engine's kernel passthrough registers backing files, which the kernel allows with CAP_SYS_ADMIN only).

Linux capabilities belong to threads, so the drop runs in the thread that mounted before any other
thread exists (both engines start their threads afterwards, and those inherit the reduced sets). The
bounding set goes too (an exec cannot bring anything back, not even as uid 0), the ambient set is
cleared, and no_new_privs is set.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

CAP_DAC_READ_SEARCH = 2
CAP_SETPCAP = 8
CAP_SYS_ADMIN = 21
NAMES = {CAP_DAC_READ_SEARCH: "cap_dac_read_search", CAP_SETPCAP: "cap_setpcap", CAP_SYS_ADMIN: "cap_sys_admin"}

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _last_cap() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return 40


def keep_only(keep: set[int]) -> None:
    """Reduce this thread's effective, permitted, inheritable, ambient and bounding sets to `keep` (as far
    as it holds them) and set no_new_privs. Irreversible."""
    # The bounding set can only shrink with CAP_SETPCAP (a systemd unit without it has bounded it already).
    if effective() >> CAP_SETPCAP & 1:
        for cap in range(_last_cap() + 1):
            if cap not in keep:
                result = _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
                if result != 0 and ctypes.get_errno() not in (22,):  # EINVAL: not a capability here
                    _check(result, f"dropping capability {cap} from the bounding set")
    _check(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clearing the ambient set")
    held = permitted()
    mask = sum(1 << cap for cap in keep) & held
    data = (_Data * 2)()
    data[0].effective = data[0].permitted = mask & 0xFFFFFFFF
    data[1].effective = data[1].permitted = mask >> 32
    header = _Header(LINUX_CAPABILITY_VERSION_3, 0)
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "setting no_new_privs")


@dataclass(frozen=True)
class CapSets:
    effective: int
    permitted: int
    bounding: int


def of_task(path: str = "/proc/thread-self/status") -> CapSets:
    fields = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("CapEff", "CapPrm", "CapBnd"):
            fields[key] = int(value.strip(), 16)
    return CapSets(fields["CapEff"], fields["CapPrm"], fields["CapBnd"])


def effective() -> int:
    return of_task().effective


def permitted() -> int:
    return of_task().permitted


def names(mask: int) -> list[str]:
    return [NAMES.get(cap, f"cap_{cap}") for cap in range(64) if mask >> cap & 1]
