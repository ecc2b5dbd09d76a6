"""The SGE autoscaler's pure part: the planning function, its data types and the scaler-log record.

The manager's control loop observes, calls `plan(snapshot, config, now)`, writes
`scaler_log_record(...)` as one line of /data/logs/sge-scaler.log, and carries the decision out.
"""

from manager.autoscaler.model import (
    Action,
    Decision,
    IgnoredJob,
    JobHold,
    LaunchHistory,
    MemberView,
    OperationInFlight,
    OpKind,
    PendingJob,
    ScalerConfig,
    ScalerConfigError,
    Snapshot,
    usable_capacity,
)
from manager.autoscaler.plan import plan
from manager.autoscaler.scaler_log import scaler_log_record

__all__ = [
    "Action",
    "Decision",
    "IgnoredJob",
    "JobHold",
    "LaunchHistory",
    "MemberView",
    "OpKind",
    "OperationInFlight",
    "PendingJob",
    "ScalerConfig",
    "ScalerConfigError",
    "Snapshot",
    "plan",
    "scaler_log_record",
    "usable_capacity",
]
