"""bench-manager: the cluster manager daemon."""

from __future__ import annotations

import asyncio
import sys

from common import sdnotify
from common.auth import CredentialError, read_token_file
from common.daemon import cancel_and_wait, install_stop_signals, run_daemon, watchdog_loop
from common.logging import get_logger
from manager.config import ManagerConfig, add_arguments, config_from_args
from manager.core import VERSION, ClusterManager
from manager.server import ListenError, bind, build_server, mark_serving
from manager.store import Store, StoreError

log = get_logger("bench-manager")


async def serve(config: ManagerConfig) -> int:
    try:
        agent_token = read_token_file(config.agent_token_file)
        user_token = read_token_file(config.user_token_file)
        store = Store(config.db)
    except (CredentialError, StoreError, OSError) as exc:
        log.error("cannot start", error=str(exc))
        return 2
    manager = ClusterManager(config, store, agent_token=agent_token)
    server, health_servicer = build_server(manager, agent_token, user_token, config.max_message_bytes)
    try:
        ports = bind(server, config.listen)
    except ListenError as exc:
        log.error("cannot start", error=str(exc))
        return 2
    stop = asyncio.Event()
    install_stop_signals(stop)
    await server.start()
    from manager.reconciler import Reconciler  # imports the SGE adapter and providers only when serving

    reconciler = Reconciler.from_config(manager)
    tasks = [asyncio.create_task(manager.liveness_loop(stop), name="liveness"),
             asyncio.create_task(reconciler.run(stop), name="reconciler"),
             asyncio.create_task(watchdog_loop(stop), name="watchdog")]
    await mark_serving(health_servicer)
    sdnotify.notify("READY=1", f"STATUS=serving on {', '.join(config.listen)}")
    log.info("serving", listen=list(config.listen), ports=ports, cluster=manager.cluster_id, version=VERSION,
             provider=config.provider, sge=config.sge)
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    log.info("stopping")
    await server.stop(grace=3)
    await cancel_and_wait(tasks)
    manager.registry.flush()
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_daemon("bench-manager", "bench-cluster manager daemon", add_arguments, config_from_args, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
