"""May this user read that mount source? Asked of the kernel as that user, who also resolves it.

A fast mount serves its source to everybody on every node (each file with its own mode), so a source
below a directory its requester cannot enter (a 0700 parent) would hand the files out past that parent.
The check therefore runs in a child process that takes the user's uid, gid and groups before it runs,
so every rule the kernel applies counts: search permission on every parent, read and search on the
source, ACLs, group membership. `setpriv` changes the ids, so the manager only ever vforks: a plain fork
of a process holding gRPC's threads runs gRPC's fork handlers in the child, which crashed it (SIGSEGV).
The same child resolves the source's symlinks, so a link can only lead through
directories that user may enter, and the manager stores the resolved path it prints.

Run by the manager, which needs CAP_SETUID/CAP_SETGID for it (root on the local cluster; the production
unit grants those two as ambient capabilities, which setpriv inherits).
Fails closed: no account, no privilege, a check that does not finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import stat
import sys
from pathlib import PurePosixPath

from manager import unix_accounts
from manager.unix_accounts import Account

CHECK_TIMEOUT_S = 10.0

# Runs as the requesting user with only the standard library (-I -S: no site packages, no environment).
# O_NONBLOCK: a FIFO put where the source was must not hang the check (O_DIRECTORY refuses it anyway).
_CHECK_PROGRAM = r"""
import json, os, sys
try:
    real = os.path.realpath(sys.argv[1], strict=True)
    os.close(os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK))
    if not os.access(real, os.R_OK | os.X_OK):
        raise PermissionError(13, os.strerror(13))
except OSError as exc:
    print(json.dumps({"errno": exc.errno, "error": exc.strerror}))
else:
    print(json.dumps({"resolved": real}))
"""


class SourceAccessError(Exception):
    """The source may not be mounted for this user; `code` is a grpc StatusCode name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def account_of(user: str) -> Account:
    account = unix_accounts.by_name(user)
    if account is None:
        raise SourceAccessError(
            "PERMISSION_DENIED",
            f"there is no unix account named {user!r} on the manager node, and a mount source's readability "
            "is checked as the requesting user's account; create the account (same name) first",
        )
    return account


def _interpreter() -> str:
    # The base interpreter, not a venv's: the check needs the standard library only, and a venv may live
    # where other users cannot enter.
    return getattr(sys, "_base_executable", "") or sys.executable


async def resolve_as(user: str, source: str, timeout_s: float = CHECK_TIMEOUT_S) -> str:
    """The source with every symlink resolved, as `user` sees it, if `user` may list and read below it;
    else SourceAccessError saying which directory stops them."""
    account = account_of(user)
    check = [*unix_accounts.run_as_prefix(account), _interpreter(), "-I", "-S", "-c", _CHECK_PROGRAM, source]
    # As root (or as itself) the check runs as the manager: root may read anything, and an unprivileged
    # manager (the production unit: bounding set CAP_SETUID|CAP_SETGID, no new privileges) cannot become
    # root — setpriv fails there ("activate capabilities"). Resolution then goes through what the manager
    # itself may enter.
    try:
        proc = await asyncio.create_subprocess_exec(
            *check,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={}, cwd="/",
        )
    except (PermissionError, OSError) as exc:
        raise SourceAccessError(
            "FAILED_PRECONDITION",
            f"cannot check {source} as {user}: starting a process as that user failed ({exc}); the manager "
            "needs CAP_SETUID and CAP_SETGID for this check",
        ) from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise SourceAccessError(
            "UNAVAILABLE", f"checking {source} as {user} did not finish within {timeout_s:.0f} s "
            "(a hung filesystem below it?); try again later") from None
    try:
        verdict = json.loads(out.decode())
    except ValueError:
        said = (err or out).decode(errors="replace").strip()[-300:] or "(no output)"
        raise SourceAccessError(
            "INTERNAL", f"checking {source} as {user} failed (status {proc.returncode}): {said}") from None
    if "resolved" in verdict:
        return str(verdict["resolved"])
    if verdict.get("errno") == 2:
        raise SourceAccessError("NOT_FOUND", f"source {source} does not exist (as {user} sees it); "
                                             "create it or check the spelling")
    hint = first_refusal(source, account)
    raise SourceAccessError(
        "PERMISSION_DENIED",
        f"{user} may not read {source} ({verdict.get('error', 'refused')})"
        + (f": {hint}" if hint else "")
        + "; a mount shows only what its requester may read — ask the owner for access or mount another source",
    )


def _allowed(st: os.stat_result, account: Account, bits: int) -> bool:
    """Mode bits only (no ACLs): good enough to point at the directory that most likely refused."""
    if account.uid == 0:
        return True
    if st.st_uid == account.uid:
        return st.st_mode & (bits << 6) == bits << 6
    if st.st_gid in account.groups:
        return st.st_mode & (bits << 3) == bits << 3
    return st.st_mode & bits == bits


def first_refusal(source: str, account: Account) -> str:
    """The first directory on the way to `source` that `account` may not enter (or read), for the message."""
    path = PurePosixPath(os.path.normpath(source))
    walked = PurePosixPath("/")
    for part in path.parts[1:]:
        walked = walked / part
        try:
            st = os.lstat(walked)
        except OSError:
            return ""
        if not stat.S_ISDIR(st.st_mode):
            return ""
        need = 0o5 if walked == path else 0o1
        if not _allowed(st, account, need):
            mode = stat.filemode(st.st_mode)
            owner = _name_of(st.st_uid)
            what = "cannot be listed" if walked == path else "cannot be entered"
            return f"{walked} ({mode}, owner {owner}) {what} by {account.name}"
    return ""


def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
