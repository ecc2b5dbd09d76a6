"""Who may call what: roles, the role each RPC needs, and what the audit trail calls each mutating RPC.

Pure data and functions (no I/O), after the seed's Bench roles: a viewer looks (status, members,
mounts, logs), a contributor also creates and deletes mounts (deleting only their own), an
administrator also scales, drains, starts and stops the cluster and manages users and nodes.
Members (agents) and users are separate kinds of principal: a member credential opens only the
agent service, a user credential only the cluster service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Role(IntEnum):
    VIEWER = 1
    CONTRIBUTOR = 2
    ADMINISTRATOR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"role must be viewer, contributor or administrator, got {text[:40]!r}") from None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. kind: 'member' (an agent), 'user', or 'join' (a one-time join token
    naming the member it enrols)."""

    kind: str
    name: str
    role: Role | None = None

    @property
    def label(self) -> str:
        return self.name if self.kind == "user" else f"{self.kind}:{self.name}"


AGENT_SERVICE = "bench.v1.ManagerService"
CLUSTER_SERVICE = "bench.v1.ClusterService"

# The role each ClusterService method needs. A method missing here is refused: new RPCs are closed
# until someone decides who may call them.
CLUSTER_METHOD_ROLES: dict[str, Role] = {
    "GetStatus": Role.VIEWER,
    "ListMembers": Role.VIEWER,
    "GetMounts": Role.VIEWER,
    "GetScalerLog": Role.VIEWER,
    "WatchEvents": Role.VIEWER,
    "WhoAmI": Role.VIEWER,
    "CreateMount": Role.CONTRIBUTOR,
    "DeleteMount": Role.CONTRIBUTOR,
    "Scale": Role.ADMINISTRATOR,
    "DrainMember": Role.ADMINISTRATOR,
    "StartCluster": Role.ADMINISTRATOR,
    "StopCluster": Role.ADMINISTRATOR,
    "AddUser": Role.ADMINISTRATOR,
    "ListUsers": Role.ADMINISTRATOR,
    "RemoveUser": Role.ADMINISTRATOR,
    "AddNode": Role.ADMINISTRATOR,
    # restricted workspaces (issue 20)
    "GetWorkspaceSettings": Role.VIEWER,
    "QueryActivity": Role.VIEWER,
    "SetAllowlist": Role.ADMINISTRATOR,
    "AddAllowedUrl": Role.ADMINISTRATOR,
    "RemoveAllowedUrl": Role.ADMINISTRATOR,
    "SetWorkspaceRights": Role.ADMINISTRATOR,
    # web access (issue 19): a login link opens a session with the asking user's own role
    "GetWebAccess": Role.ADMINISTRATOR,
    "SetWebAccess": Role.ADMINISTRATOR,
    "WebAccessLoginLink": Role.VIEWER,
}

# Which principal kind each ManagerService method accepts.
AGENT_METHOD_KINDS: dict[str, str] = {"Join": "join", "Register": "member", "Connect": "member"}


def _field(name: str) -> Callable[[Any], str]:
    return lambda request: str(getattr(request, name, ""))[:256]


# Mutating ClusterService methods: the action name in the activity log and how to name the target.
AUDITED_METHODS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "Scale": ("cluster scale", lambda r: str(r).replace("\n", " ").strip()[:256]),
    "DrainMember": ("cluster drain", _field("member_id")),
    "StartCluster": ("cluster start", lambda r: "cluster"),
    "StopCluster": ("cluster stop", lambda r: "cluster"),
    "CreateMount": ("data create-mount", lambda r: str(r.spec.mount_path)[:256]),
    "DeleteMount": ("data delete-mount", _field("mount_path")),
    "AddUser": ("admin add-user", _field("name")),
    "RemoveUser": ("admin remove-user", _field("name")),
    "AddNode": ("admin add-node", _field("node_id")),
    "SetAllowlist": ("workspace set-allowlist", lambda r: " ".join(e.strip() for e in r.entries if e.strip())[:256]),
    "AddAllowedUrl": ("workspace add-url", _field("url")),
    "RemoveAllowedUrl": ("workspace remove-url", _field("url")),
    "SetWorkspaceRights": ("workspace set-rights", lambda r: "upload on" if r.upload else "upload off"),
    "SetWebAccess": ("cluster web-access", lambda r: "enable" if r.enabled else "disable"),
}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    message: str = ""


def authorise(principal: Principal, service: str, method: str) -> Decision:
    """May `principal` call `service`/`method`? The message of a refusal names what is needed."""
    if service == AGENT_SERVICE:
        kind = AGENT_METHOD_KINDS.get(method)
        if kind is None:
            return Decision(False, f"{method} is not open to anyone")
        if principal.kind != kind:
            return Decision(False, f"{method} needs a {kind} credential, not a {principal.kind} credential")
        return Decision(True)
    if service == CLUSTER_SERVICE:
        needed = CLUSTER_METHOD_ROLES.get(method)
        if needed is None:
            return Decision(False, f"{method} is not open to anyone")
        if principal.kind != "user" or principal.role is None:
            return Decision(False, f"{method} needs a user credential, not a {principal.kind} credential")
        if principal.role < needed:
            return Decision(False, f"{method} needs the {needed.label} role; user {principal.name!r} is a "
                                   f"{principal.role.label}")
        return Decision(True)
    return Decision(False, f"unknown service {service}")


def may_delete_mount(principal: Principal, owner: str) -> Decision:
    """Contributors delete only their own mounts; administrators any."""
    if principal.role is not None and principal.role >= Role.ADMINISTRATOR:
        return Decision(True)
    if principal.kind == "user" and principal.name == owner:
        return Decision(True)
    return Decision(False, f"deleting a mount created by {owner!r} needs the administrator role "
                           f"(a contributor deletes only their own mounts)")
