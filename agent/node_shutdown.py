"""How a member ends its own node when its manager is gone: one small interface, one implementation
per provider, chosen by the agent's `node_shutdown` setting (the provider writes it at launch).

- `init` (local members): the member's init (`manager.providers.local_member`) is PID 1 of the
  member's pid namespace; SIGTERM to PID 1 makes it stop sge_execd and the agent, unmount /scratch
  and exit, which ends the member's namespaces. The host-side remains (netns, loop image, state
  directory) are the provider's to remove when the manager comes back (`LocalProvider.terminate`).
- `poweroff` (EC2): the instance is launched with InstanceInitiatedShutdownBehavior=terminate, so an
  operating-system shutdown terminates it. The node needs no AWS credentials for that: a member
  holding the right to call TerminateInstances could end every node of the account.
- `none`: log only (manager node, development).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Protocol

from common.logging import get_logger

log = get_logger("node-shutdown")

CHOICES = ("none", "init", "poweroff")
POWEROFF_COMMAND = ("systemctl", "poweroff")


class NodeShutdownError(Exception):
    pass


class NodeShutdown(Protocol):
    @property
    def name(self) -> str: ...

    def shut_down(self, reason: str) -> None:
        """Start ending this node; returns once the request is made (the node goes soon after)."""
        ...


@dataclass(frozen=True)
class LogOnly:
    name: str = "none"

    def shut_down(self, reason: str) -> None:
        log.warning("node shutdown requested, but this node has no shutdown action", reason=reason)


@dataclass(frozen=True)
class SignalInit:
    """Local member: SIGTERM to PID 1 of this pid namespace (the member's init)."""

    name: str = "init"
    pid: int = 1

    def shut_down(self, reason: str) -> None:
        if self.pid == 1 and os.getpid() == 1:
            raise NodeShutdownError("the agent is PID 1 itself; nothing to signal")
        log.warning("ending this member: signalling its init", pid=self.pid, reason=reason)
        try:
            os.kill(self.pid, signal.SIGTERM)
        except OSError as exc:
            raise NodeShutdownError(f"cannot signal the member's init (pid {self.pid}): {exc}") from exc


@dataclass(frozen=True)
class Poweroff:
    """EC2: an OS shutdown, which InstanceInitiatedShutdownBehavior=terminate turns into a termination."""

    name: str = "poweroff"
    command: tuple[str, ...] = POWEROFF_COMMAND

    def shut_down(self, reason: str) -> None:
        log.warning("ending this member: powering the instance off", command=" ".join(self.command), reason=reason)
        try:
            subprocess.run(list(self.command), check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise NodeShutdownError(f"{' '.join(self.command)} failed: {exc}") from exc


def for_setting(setting: str, poweroff_command: tuple[str, ...] = POWEROFF_COMMAND) -> NodeShutdown:
    if setting == "init":
        return SignalInit()
    if setting == "poweroff":
        return Poweroff(command=poweroff_command)
    if setting == "none":
        return LogOnly()
    raise ValueError(f"node_shutdown must be one of {', '.join(CHOICES)}, got {setting!r}")
