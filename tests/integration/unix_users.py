"""Real unix accounts for tests that check what an ordinary user can (not) see: created with useradd,
removed with userdel at the end (root). Regular uids (>= 1000), as SGE's min_uid and real users have."""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class UnixUser:
    name: str
    uid: int
    gid: int

    def run_python(self, code: str, *args: str, timeout: float = 20,
                   input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `code` with Debian's python3 as this user (only its uid, gid and own groups)."""
        return subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code, *args], user=self.uid, group=self.gid,
                              extra_groups=os.getgrouplist(self.name, self.gid), env={"PATH": "/usr/bin:/bin"},
                              cwd="/", capture_output=True, text=True, timeout=timeout, input=input_text)

    def popen_python(self, code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(["/usr/bin/python3", "-I", "-S", "-u", "-c", code, *args], user=self.uid,
                                group=self.gid, extra_groups=os.getgrouplist(self.name, self.gid),
                                env={"PATH": "/usr/bin:/bin"}, cwd="/", stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextmanager
def unix_users(*names: str) -> Iterator[dict[str, UnixUser]]:
    made: list[str] = []
    try:
        for name in names:
            subprocess.run(["userdel", name], capture_output=True, check=False)  # a leftover of a killed run
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                           check=True, capture_output=True)
            made.append(name)
        yield {name: UnixUser(name, pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid) for name in names}
    finally:
        for name in made:
            subprocess.run(["userdel", name], capture_output=True, check=False)


def chown(path: Path, user: UnixUser, mode: int) -> None:
    os.chown(path, user.uid, user.gid)
    os.chmod(path, mode)
