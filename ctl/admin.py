"""`workspace-ctl admin ...`: users and their roles, enrolling nodes, and `whoami`.

add-user run as root on the workspace node installs the new credential for NAME at
~NAME/.config/bench-cluster/credential, readable by NAME alone. The file is written by a child
process running as NAME (never by root following paths in a home NAME controls), created 0600 in a
0700 directory. Anywhere else it prints the credential and how NAME installs it.
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
from typing import Any

from common.client import USER_CREDENTIAL, ManagerEndpoint
from ctl import output
from ctl.output import ago, table, to_dict
from protos.bench.v1 import cluster_pb2

ROLES = {"viewer": cluster_pb2.ROLE_VIEWER, "contributor": cluster_pb2.ROLE_CONTRIBUTOR,
         "administrator": cluster_pb2.ROLE_ADMINISTRATOR}
ROLE_NAMES = {v: k for k, v in ROLES.items()}

# Runs as the new user: creates ~/.config/bench-cluster (0700) and the credential (0600) from stdin.
_INSTALL_AS_USER = """
import os, sys
from pathlib import Path
target = Path(sys.argv[1])
os.umask(0o077)
target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
os.chmod(target.parent, 0o700)
tmp = target.with_name(".credential.tmp")
tmp.unlink(missing_ok=True)
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
os.write(fd, sys.stdin.buffer.read())
os.close(fd)
os.replace(tmp, target)
"""


def install_for_user(name: str, credential: str) -> str:
    """Install `credential` as `name`'s; returns the path. Raises OSError/KeyError when it cannot."""
    entry = pwd.getpwnam(name)
    target = os.path.join(entry.pw_dir, str(USER_CREDENTIAL))
    subprocess.run([sys.executable, "-I", "-c", _INSTALL_AS_USER, target], input=(credential + "\n").encode(),
                   user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], check=True, capture_output=True,
                   timeout=30, cwd="/")
    return target


async def add_user(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await stub.AddUser(cluster_pb2.AddUserRequest(name=args.name, role=ROLES[args.role]),
                                  metadata=ep.metadata, timeout=args.timeout)
    installed = ""
    if os.geteuid() == 0:
        try:
            installed = install_for_user(args.name, response.credential)
        except KeyError:
            pass  # no local account of that name: print it instead
        except (OSError, subprocess.SubprocessError) as exc:
            print(f"workspace-ctl: could not install the credential for {args.name}: {exc}", file=sys.stderr)
    if args.output == "json":
        out = {"user": to_dict(response.user), "installed_at": installed}
        if not installed:
            out["credential"] = response.credential
        output.print_json(out)
        return 0
    print(f"user {args.name} is now a {args.role}")
    if installed:
        print(f"credential installed at {installed} (readable by {args.name} only); workspace-ctl finds it there")
    else:
        print(f"credential (shown once; the manager keeps only its hash):\n  {response.credential}\n"
              f"{args.name} installs it on the workspace node with:\n"
              f"  install -D -m 600 /dev/stdin ~/.config/bench-cluster/credential   (paste it, then Ctrl-D)")
    return 0


async def list_users(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await stub.ListUsers(cluster_pb2.ListUsersRequest(), metadata=ep.metadata, timeout=args.timeout)
    if args.output == "json":
        output.print_json({"users": [{"name": u.name, "role": ROLE_NAMES.get(u.role, "unknown"),
                                      "created_at_unix": u.created_at_unix, "created_by": u.created_by}
                                     for u in response.users]})
        return 0
    table("users", ("user", "role", "added", "by"),
          [(u.name, ROLE_NAMES.get(u.role, "unknown"), ago(u.created_at_unix), u.created_by) for u in response.users])
    return 0


async def remove_user(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await stub.RemoveUser(cluster_pb2.RemoveUserRequest(name=args.name), metadata=ep.metadata,
                                     timeout=args.timeout)
    output.print_json({"message": response.message}) if args.output == "json" else print(response.message)
    return 0


async def add_node(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await stub.AddNode(cluster_pb2.AddNodeRequest(node_id=args.node_id, hostname=args.hostname or "",
                                                             ip=args.ip or ""),
                                  metadata=ep.metadata, timeout=args.timeout)
    if args.output == "json":
        output.print_json(to_dict(response))
    else:
        print(f"node {response.node_id} enrolled; its one-time join token (valid until {ago(response.expires_at_unix)}"
              f"):\n  {response.join_token}\nput it in the node's join token file (bench-agent --join-token-file)")
    return 0


async def whoami(stub: Any, args: argparse.Namespace, ep: ManagerEndpoint) -> int:
    response = await stub.WhoAmI(cluster_pb2.WhoAmIRequest(), metadata=ep.metadata, timeout=args.timeout)
    role = ROLE_NAMES.get(response.role, "unknown")
    if args.output == "json":
        output.print_json({"name": response.name, "role": role, "credential_file": ep.credential_source})
    else:
        print(f"{response.name} ({role}), credential {ep.credential_source}")
    return 0


def add_commands(groups: Any, command: Any) -> None:
    admin = groups.add_parser("admin", help="users, roles and nodes (administrators)").add_subparsers(
        dest="command", required=True)
    p = command(admin, "add-user", add_user, "create a user (or change their role) and issue their credential")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=list(ROLES))
    command(admin, "list-users", list_users, "users and their roles")
    p = command(admin, "remove-user", remove_user, "remove a user; their credential stops working at once")
    p.add_argument("name")
    p = command(admin, "add-node", add_node, "enrol a node the provider does not launch; prints its join token")
    p.add_argument("node_id")
    p.add_argument("--hostname", help="the node's host name (default: the node id)")
    p.add_argument("--ip", help="the node's IP address")
    command(admin, "whoami", whoami, "who the manager thinks you are, and your role")
