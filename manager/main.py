"""bench-manager: the cluster manager daemon."""

from __future__ import annotations

import asyncio
import sys

from common import sdnotify
from common.daemon import cancel_and_wait, install_stop_signals, run_daemon, watchdog_loop
from common.logging import get_logger
from common.tls import TlsError, server_credentials
from manager.authz import Role
from manager.config import ManagerConfig, add_arguments, config_from_args
from manager.core import VERSION, ClusterManager
from manager.credentials import read_secret_file
from manager.server import ListenError, bind, build_server, mark_serving
from manager.store import Store, StoreError

log = get_logger("bench-manager")


async def serve(config: ManagerConfig) -> int:
    try:
        tls = None if config.insecure_plaintext else server_credentials(config.tls_cert_file, config.tls_key_file)
        store = Store(config.db)
    except (TlsError, StoreError, OSError) as exc:
        log.error("cannot start", error=str(exc))
        return 2
    if tls is None:
        log.warning("serving WITHOUT TLS (--insecure-plaintext): credentials cross the network in the clear")
    manager = ClusterManager(config, store)
    bootstrap_credentials(manager)
    from manager.web.server import WebAccess  # aiohttp loads only in the daemon

    manager.web = WebAccess(manager)
    server, health_servicer = build_server(manager, config.max_message_bytes, config.rpc_limit)
    try:
        ports = bind(server, config.listen, tls)
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
             asyncio.create_task(watchdog_loop(stop), name="watchdog"),
             asyncio.create_task(manager.web.sample_loop(stop), name="web-history")]
    await manager.web.restore()
    await mark_serving(health_servicer)
    sdnotify.notify("READY=1", f"STATUS=serving on {', '.join(config.listen)}")
    log.info("serving", listen=list(config.listen), ports=ports, cluster=manager.cluster_id, version=VERSION,
             provider=config.provider, sge=config.sge)
    await stop.wait()
    sdnotify.notify("STOPPING=1")
    log.info("stopping")
    await manager.web.shutdown()
    await server.stop(grace=3)
    await cancel_and_wait(tasks)
    manager.registry.flush()
    store.close()
    return 0


def bootstrap_credentials(manager: ClusterManager) -> None:
    """Credentials made by whoever set the node up (bench-cluster up, first-boot): the manager node's
    own agent and the break-glass administrator root. A missing file is not fatal (no such principal)."""
    config = manager.config
    for path, install in (
            (config.host_agent_credential_file,
             lambda secret: manager.credentials.install_member_credential(config.host_agent_id, secret)),
            (config.admin_credential_file,
             lambda secret: manager.credentials.install_user("root", Role.ADMINISTRATOR, secret, "bootstrap"))):
        try:
            install(read_secret_file(path))
        except FileNotFoundError:
            log.warning("bootstrap credential missing; skipped", path=str(path))
        except (OSError, ValueError) as exc:
            log.error("bootstrap credential unusable; skipped", path=str(path), error=str(exc))


def main(argv: list[str] | None = None) -> int:
    return run_daemon("bench-manager", "bench-cluster manager daemon", add_arguments, config_from_args, serve, argv)


if __name__ == "__main__":
    sys.exit(main())
