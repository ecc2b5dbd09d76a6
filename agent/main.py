"""bench-agent: the node daemon on every member (and on the manager node, for its mounts)."""

from __future__ import annotations

import asyncio
import sys
from urllib.parse import urlsplit

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent import scratch
from agent.commands import CommandHandler
from agent.config import AgentConfig, add_arguments, config_from_args
from agent.mounts import MountManager
from agent.refusals import RefusalSpool
from agent.restrictions import RestrictionEnforcer
from agent.session import VERSION, ManagerSession
from common import sdnotify
from common.daemon import cancel_and_wait, install_stop_signals, run_daemon, watchdog_loop
from common.logging import get_logger
from common.tls import TlsError, channel_credentials

log = get_logger("bench-agent")


async def run(config: AgentConfig) -> int:
    try:
        tls = channel_credentials(config.ca_file)
        config.state_dir.mkdir(parents=True, exist_ok=True)
    except (TlsError, OSError) as exc:
        log.error("cannot start", error=str(exc))
        return 2
    stop = asyncio.Event()
    install_stop_signals(stop)
    try:
        scratch.prepare(config.scratch_dir)
    except (scratch.ScratchError, OSError) as exc:
        log.warning("scratch area not usable; drains will refuse to wipe it", path=str(config.scratch_dir),
                    error=str(exc))
    mounts = MountManager(config.state_dir / "mounts", data_root=config.data_root,
                          engine=config.fastmount_engine)
    await mounts.start()  # restores the mounts this node had before a restart
    exempt = (f"{urlsplit(config.spot_metadata_url).hostname}/32",) if config.spot_metadata_url else ()
    spool = RefusalSpool(config.state_dir / "refusals.jsonl")
    restrictions = RestrictionEnforcer(config.data_root, config.state_dir, spool.path,
                                       enforce_egress=config.enforce_egress, extra_exempt=exempt)
    handler = CommandHandler(mounts, config.state_dir, config.scratch_dir, stop.set, restrictions)

    # Local health endpoint (unix socket in the state dir): SERVING while connected to the manager.
    health_servicer = health.aio.HealthServicer()
    server = aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    socket_path = config.state_dir / "agent.sock"
    socket_path.unlink(missing_ok=True)
    server.add_insecure_port(f"unix:{socket_path}")
    await server.start()

    def on_connected(connected: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if connected else health_pb2.HealthCheckResponse.NOT_SERVING
        asyncio.get_running_loop().create_task(health_servicer.set("", status))
        sdnotify.notify(f"STATUS={'connected to' if connected else 'reconnecting to'} {config.manager}")

    session = ManagerSession(config, tls, mounts, handler, restrictions, spool, on_connected)
    tasks = [asyncio.create_task(session.run(stop), name="session"),
             asyncio.create_task(restrictions.supervise(stop), name="restrictions"),
             asyncio.create_task(watchdog_loop(stop), name="watchdog")]
    if config.role == "member":  # the manager node's own agent cannot be orphaned
        from agent.node_shutdown import for_setting
        from agent.orphan import OrphanWatcher

        watcher = OrphanWatcher(config, mounts, for_setting(config.node_shutdown), lambda: session.connected,
                                lambda: session.dynamic)
        tasks.append(asyncio.create_task(watcher.run(stop), name="orphan"))
    if config.spot_metadata_url:
        from agent.spot import watch_spot_notices

        tasks.append(asyncio.create_task(watch_spot_notices(config, session.spot_notices, stop), name="spot"))
    sdnotify.notify("READY=1", f"STATUS=connecting to {config.manager}")
    log.info("agent started", node=config.node_id, manager=config.manager, version=VERSION, role=config.role)
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    log.info("stopping")
    await cancel_and_wait(tasks)
    await mounts.close()
    await restrictions.close()
    await server.stop(grace=1)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_daemon("bench-agent", "bench-cluster node agent", add_arguments, config_from_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
