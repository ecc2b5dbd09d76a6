"""protobuf <-> domain conversions for the servicers (kept out of both the servicers and the domain)."""

from __future__ import annotations

from common.mountmodes import MODE_NAMES, MODE_VALUES
from manager.errors import invalid
from manager.model import Capacity, MemberRecord, MountStateView, TransitionRecord
from protos.bench.v1 import cluster_pb2, types_pb2


def capacity_from_pb(pb: types_pb2.Capacity) -> Capacity:
    return Capacity(cores=pb.cores, memory_bytes=pb.memory_bytes, scratch_total_bytes=pb.scratch_total_bytes,
                    scratch_free_bytes=pb.scratch_free_bytes, load1=pb.load1)


def capacity_to_pb(c: Capacity) -> types_pb2.Capacity:
    return types_pb2.Capacity(cores=c.cores, memory_bytes=c.memory_bytes,
                              scratch_total_bytes=c.scratch_total_bytes, scratch_free_bytes=c.scratch_free_bytes,
                              load1=c.load1)


def mount_report_from_pb(pb: types_pb2.MountReport) -> MountStateView:
    if pb.spec.mode not in MODE_NAMES:  # an open enum: any number may arrive on the wire
        raise invalid(f"mount report for {pb.spec.mount_path[:200]!r} has unknown mode {pb.spec.mode}")
    return MountStateView(mount_path=pb.spec.mount_path, source=pb.spec.source, mode=MODE_NAMES[pb.spec.mode],
                          state=pb.state, bytes_read=pb.bytes_read, errors=pb.errors, message=pb.message)


def mount_spec_to_pb(mount_path: str, source: str, mode: str) -> types_pb2.MountSpec:
    return types_pb2.MountSpec(mount_path=mount_path, source=source, mode=MODE_VALUES[mode])


def mount_report_to_pb(v: MountStateView) -> types_pb2.MountReport:
    return types_pb2.MountReport(spec=mount_spec_to_pb(v.mount_path, v.source, v.mode), state=v.state,
                                 bytes_read=v.bytes_read, errors=v.errors, message=v.message)


def transition_to_pb(t: TransitionRecord) -> types_pb2.Transition:
    return types_pb2.Transition(from_state=t.from_state, to_state=t.to_state, at_unix=t.at, stimulus=t.stimulus,
                                reason=t.reason)


def member_to_pb(m: MemberRecord, history: list[TransitionRecord] | None = None) -> cluster_pb2.Member:
    drain = m.drain or {}
    return cluster_pb2.Member(
        member_id=m.member_id, hostname=m.hostname, ip=m.ip, state=m.state.value, state_since_unix=m.state_since,
        capacity=capacity_to_pb(m.capacity), last_heartbeat_unix=m.last_heartbeat, running_jobs=m.running_jobs,
        mounts=[mount_report_to_pb(v) for v in m.mounts], drain_step=str(drain.get("step", "")),
        drain_progress=str(drain.get("progress", "")),
        history=[transition_to_pb(t) for t in (history or [])], agent_version=m.agent_version,
        joined_at_unix=m.joined_at, role=m.role)
