"""A member speaks only for itself (the Kubernetes Node-authorizer idea), checked on every agent call.

- The credential names the member; a request naming another member is refused.
- Hostname and IP come from the provider's record (the REQUESTED row); an agent claiming others is
  refused, so it cannot make the manager add a host of its choosing to SGE.
- Only members the provider launched (or an administrator enrolled) exist; the manager node's own
  agent is the one exception, known by its configured id.
- A spot notice must announce a deadline within [now, now + SPOT_NOTICE_HORIZON_S].

Every refusal is logged and written to the activity log (user `member:<id>`), so an operator sees
who tried what.
"""

from __future__ import annotations

import grpc

from common.logging import get_logger
from manager.activity import ActivityLog
from manager.authz import Principal
from manager.errors import RequestError
from manager.lifecycle import MemberState
from manager.registry import MemberRegistry, NodeRegistration

log = get_logger("identity")

SPOT_NOTICE_HORIZON_S = 300.0
CLOCK_SKEW_S = 5.0  # a notice stamped this far in the past is still "now": node clocks differ slightly
GONE = (MemberState.TERMINATED, MemberState.DRAINED)


class IdentityRules:
    def __init__(self, registry: MemberRegistry, activity: ActivityLog, host_agent_id: str) -> None:
        self._registry = registry
        self._activity = activity
        self.host_agent_id = host_agent_id

    def refuse(self, principal: Principal, action: str, message: str,
               code: grpc.StatusCode = grpc.StatusCode.PERMISSION_DENIED) -> RequestError:
        log.warning("refused agent call", member=principal.name, action=action, reason=message)
        self._activity.record(principal.label, action, f"denied: {code.name}: {message}")
        return RequestError(code, message)

    def registration(self, principal: Principal, claimed: NodeRegistration) -> NodeRegistration:
        """What to register: the caller's own id, with the provider's hostname and IP."""
        me = principal.name
        if claimed.node_id and claimed.node_id != me:
            raise self.refuse(principal, "agent register",
                              f"credential of member {me!r} cannot register member {claimed.node_id[:80]!r}")
        record = self._registry.get(me)
        if me == self.host_agent_id:
            if claimed.role != "manager":
                raise self.refuse(principal, "agent register", f"{me!r} is the manager node's agent: role must "
                                  f"be 'manager', got {claimed.role[:20]!r}")
            # The manager node is this machine: it is never made an SGE host from what it says.
            return NodeRegistration(me, claimed.hostname, claimed.ip, claimed.agent_version, claimed.capacity,
                                    "manager")
        if record is None:
            raise self.refuse(principal, "agent register", f"member {me!r} is unknown: no provider launched it")
        if record.state in GONE:
            raise self.refuse(principal, "agent register", f"member {me!r} is {record.state.value.lower()}",
                              grpc.StatusCode.FAILED_PRECONDITION)
        if claimed.role and claimed.role != record.role:
            raise self.refuse(principal, "agent register", f"member {me!r} has role {record.role}, "
                              f"not {claimed.role[:20]!r}")
        for field, recorded, said in (("hostname", record.hostname, claimed.hostname), ("ip", record.ip, claimed.ip)):
            if recorded and said and not _same(field, recorded, said):
                raise self.refuse(principal, "agent register",
                                  f"member {me!r} has {field} {recorded!r} in the provider's record; "
                                  f"it cannot claim {said[:80]!r}")
        return NodeRegistration(me, record.hostname or claimed.hostname, record.ip or claimed.ip,
                                claimed.agent_version, claimed.capacity, record.role)

    def hello(self, principal: Principal, member_id: str) -> None:
        if member_id != principal.name:
            raise self.refuse(principal, "agent connect",
                              f"credential of member {principal.name!r} cannot open the stream of {member_id[:80]!r}")

    def spot_deadline_ok(self, principal: Principal, deadline_unix: float, now: float) -> bool:
        if now - CLOCK_SKEW_S <= deadline_unix <= now + SPOT_NOTICE_HORIZON_S:
            return True
        self.refuse(principal, "agent spot-notice",
                    f"spot notice deadline {deadline_unix:.0f} is outside [now, now + {SPOT_NOTICE_HORIZON_S:.0f}s] "
                    f"(now {now:.0f}); ignored", grpc.StatusCode.INVALID_ARGUMENT)
        return False


def _same(field: str, recorded: str, said: str) -> bool:
    """Equal, or for host names the short name of the recorded FQDN (EC2 records ip-10-0-1-5.ec2.internal,
    the node calls itself ip-10-0-1-5)."""
    if said == recorded:
        return True
    return field == "hostname" and said.lower() == recorded.split(".", 1)[0].lower()
