"""bench-manager: the cluster manager daemon."""

from __future__ import annotations

import argparse
import asyncio
import sys

from common import sdnotify
from common.auth import CredentialError, read_token_file
from common.daemon import install_stop_signals, watchdog_loop
from common.logging import configure_logging, get_logger
from manager.config import ConfigError, ManagerConfig, add_arguments, config_from_args
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
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    manager.registry.flush()
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench-manager", description="bench-cluster manager daemon")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"bench-manager: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_format)  # type: ignore[arg-type]
    return asyncio.run(serve(config))


if __name__ == "__main__":
    sys.exit(main())
