"""Issue 17 (users and roles): workspace-ctl run by real non-root users with their own credentials.

Users are created with useradd for this module; `workspace-ctl admin add-user` run as root installs
each credential in the user's home; every later call runs as that user (setuid in the child), with
BENCH_USER set to someone else to show the manager never believes it.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_fuse, require_root
from tests.harness import VENV_BIN, ControlPlane, wait_until

USERS = {"bctviewer": "viewer", "bctcontrib": "contributor", "bctadmin": "administrator"}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    require_root()
    require_fuse()
    # World-traversable root (pytest's tmp is 0700): users read the CA and the mount sources below it.
    root = Path(tempfile.mkdtemp(prefix="bench-roles-", dir="/tmp"))
    root.chmod(0o755)
    for name in USERS:
        subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True, capture_output=True)
    cp = ControlPlane(root)
    try:
        cp.start_manager()
        cp.start_agent("node-a")
        wait_until(lambda: cp.states().get("node-a") == "READY", 20, "node-a READY")
        (cp.data_root / "project" / "shared").mkdir(parents=True)
        for path in (cp.data_root, cp.data_root / "project", cp.data_root / "project" / "shared"):
            path.chmod(0o755)
        for name, role in USERS.items():
            result = cp.ctl("admin", "add-user", name, "--role", role)
            assert result.returncode == 0, result.stderr
        yield cp
    finally:
        cp.shutdown()
        for name in USERS:
            subprocess.run(["userdel", "-r", name], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def as_user(plane: ControlPlane, name: str, *args: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(name)
    env = {"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir, "USER": name, "LOGNAME": name,
           "BENCH_USER": "mallory",  # a lie: the manager names the user from the credential
           "BENCH_CTL_CONFIG": "/nonexistent/client.toml"}
    return subprocess.run([str(VENV_BIN / "workspace-ctl"), "--manager", plane.address, "--ca-file",
                           str(plane.trust.ca), *args], capture_output=True, text=True, timeout=60, env=env,
                          user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], cwd="/", check=False)


def activity(plane: ControlPlane) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (plane.data_root / "logs" / "activity.log").read_text().splitlines()]


def test_add_user_installs_a_credential_only_that_user_can_read(plane: ControlPlane) -> None:
    for name in USERS:
        home = Path(pwd.getpwnam(name).pw_dir)
        path = home / ".config" / "bench-cluster" / "credential"
        st = path.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (pwd.getpwnam(name).pw_uid, 0o600)
        assert path.parent.stat().st_mode & 0o777 == 0o700
    assert as_user(plane, "bctviewer", "admin", "whoami").stdout.startswith("bctviewer (viewer)")
    # another user cannot read it, so cannot borrow it
    stolen = as_user(plane, "bctcontrib", "--credential-file",
                     str(Path(pwd.getpwnam("bctadmin").pw_dir) / ".config/bench-cluster/credential"),
                     "cluster", "status")
    assert stolen.returncode == 2 and "not readable by this user" in stolen.stderr
    users = json.loads(plane.ctl("admin", "list-users", "--output", "json").stdout)["users"]
    assert {u["name"]: u["role"] for u in users} == {**USERS, "root": "administrator"}


def test_viewer_reads_but_cannot_change_anything(plane: ControlPlane) -> None:
    reads: list[tuple[str, ...]] = [("cluster", "status"), ("cluster", "members"), ("data", "get-mounts"),
                                    ("compute", "get-logs")]
    for command in reads:
        assert as_user(plane, "bctviewer", *command).returncode == 0
    changes: list[tuple[str, ...]] = [("cluster", "scale", "--static", "3"), ("cluster", "drain", "node-a"),
                                      ("data", "create-mount", "--mount-path", "/data/mounts/v", "--source",
                                       str(plane.data_root)),
                                      ("admin", "list-users")]
    for command in changes:
        result = as_user(plane, "bctviewer", *command)
        assert result.returncode == 5, (command, result.stderr)
        assert "permission denied" in result.stderr
    denied = [a for a in activity(plane) if a["result"].startswith("denied")]
    assert {a["action"] for a in denied if a["user"] == "bctviewer"} >= {"cluster scale", "cluster drain",
                                                                         "data create-mount"}
    scale = next(a for a in denied if a["action"] == "cluster scale" and a["user"] == "bctviewer")
    assert "needs the administrator role" in scale["result"]
    assert not any(a["user"] == "mallory" for a in activity(plane))
    assert plane.states()["node-a"] == "READY"


def test_contributor_deletes_only_their_own_mounts(plane: ControlPlane) -> None:
    shared = str(plane.data_root / "project" / "shared")
    mine, theirs = str(plane.data_root / "mounts" / "mine"), str(plane.data_root / "mounts" / "admins")
    by_admin = as_user(plane, "bctadmin", "data", "create-mount", "--mount-path", theirs, "--source", shared)
    assert by_admin.returncode == 0, by_admin.stderr
    created = as_user(plane, "bctcontrib", "data", "create-mount", "--mount-path", mine, "--source", shared)
    assert created.returncode == 0, created.stderr
    other = as_user(plane, "bctcontrib", "data", "delete-mount", "--mount-path", theirs)
    assert other.returncode == 5 and "needs the administrator role" in other.stderr
    assert as_user(plane, "bctcontrib", "data", "delete-mount", "--mount-path", mine).returncode == 0
    assert as_user(plane, "bctcontrib", "cluster", "scale", "--static", "1").returncode == 5
    assert as_user(plane, "bctadmin", "data", "delete-mount", "--mount-path", theirs).returncode == 0
    lines = [(a["user"], a["action"], a["result"].split(":")[0]) for a in activity(plane)
             if a["action"].startswith("data")]
    assert ("bctcontrib", "data delete-mount", "denied") in lines
    assert ("bctcontrib", "data create-mount", "ok") in lines and ("bctadmin", "data delete-mount", "ok") in lines


def test_administrator_can_do_everything_and_removal_is_immediate(plane: ControlPlane) -> None:
    admin = "bctadmin"
    for command in (("cluster", "scale", "--min", "0", "--max", "2"), ("cluster", "drain", "node-a"),
                    ("cluster", "stop"), ("cluster", "start"),
                    ("admin", "add-user", "bcttemp", "--role", "viewer"), ("admin", "list-users")):
        result = as_user(plane, admin, *command)
        assert result.returncode == 0, (command, result.stderr)
    # not root: the new credential is printed, not installed
    printed = as_user(plane, admin, "admin", "add-user", "bctviewer2", "--role", "viewer", "--output", "json")
    credential = json.loads(printed.stdout)["credential"]
    cred_file = plane.root / "viewer2.credential"
    cred_file.write_text(credential + "\n")
    assert plane.ctl("cluster", "status", token_file=cred_file).returncode == 0
    assert as_user(plane, admin, "admin", "remove-user", "bctviewer2").returncode == 0
    refused = plane.ctl("cluster", "status", token_file=cred_file)
    assert refused.returncode == 4 and "refused the credential" in refused.stderr
    assert as_user(plane, admin, "admin", "remove-user", "bcttemp").returncode == 0
    ok = [a for a in activity(plane) if a["user"] == admin and a["result"] == "ok"]
    assert {a["action"] for a in ok} >= {"cluster scale", "cluster stop", "cluster start", "admin add-user",
                                         "admin remove-user", "cluster drain"}
    assert os.geteuid() == 0
