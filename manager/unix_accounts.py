"""Unix accounts the manager acts for: who a user is (uid, gid, groups) and how to run a command as them.

The manager starts a few things on a user's behalf: the readability check of a mount source
(manager/mountaccess.py) and the Spark executor slots of a user's application (manager/spark/broker.py).
Both must run with the user's own ids, so the kernel applies that user's permissions and SGE accounts
the work to them. `setpriv` changes the ids; the manager needs CAP_SETUID/CAP_SETGID for it (root on
the local cluster; the production unit grants those two as ambient capabilities, which setpriv
inherits). An unprivileged manager cannot become root: for root's own work it runs the command itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def by_name(user: str) -> Account | None:
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    return Account(user, entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(user, entry.pw_gid)))


def by_uid(uid: int) -> Account | None:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return by_name(entry.pw_name)


def run_as_prefix(account: Account) -> list[str]:
    """The argv prefix that runs a command with `account`'s uid, gid and groups; empty when the manager
    already is that account, or the account is root (see the module docstring)."""
    if account.uid in (0, os.geteuid()):
        return []
    groups = ["--groups", ",".join(map(str, account.groups))] if account.groups else ["--clear-groups"]
    return [shutil.which("setpriv") or "/usr/bin/setpriv", f"--reuid={account.uid}", f"--regid={account.gid}",
            *groups, "--"]
