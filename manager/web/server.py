"""Web access: opens and closes the HTTPS port on the manager's event loop, and keeps the on/off
state in the store (meta key web_access), so a restarted manager comes back as it was left.

Disabled means the port is closed (the site is stopped, live connections and every browser session
are ended), not a page saying "disabled".
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiohttp import web

from common.addresses import parse_host_port
from common.logging import get_logger
from manager.core import ClusterManager
from manager.lifecycle import MemberState
from manager.web.auth import WebLogins
from manager.web.history import History, Sample

log = get_logger("web")

META_KEY = "web_access"
SHUTDOWN_TIMEOUT_S = 2.0


class WebBindError(Exception):
    pass


class WebAccess:
    def __init__(self, manager: ClusterManager, history: History | None = None) -> None:
        self.manager = manager
        self.history = history or History(manager.store)
        self.logins = WebLogins(manager.clock)
        self.closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self._ssl: ssl.SSLContext | None = None

    # state ------------------------------------------------------------------------------------
    @property
    def wanted(self) -> bool:
        return self.manager.store.get_meta(META_KEY) == "on"

    @property
    def serving(self) -> bool:
        return self._runner is not None

    def listening(self) -> list[tuple[str, int]]:
        if self._runner is None:
            return []
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses]

    def base_url(self) -> str:
        """What a browser opens: the advertised (else first listen) host with the bound web port."""
        bound = self.listening()
        if not bound:
            return ""
        config = self.manager.config
        host, _ = parse_host_port(config.advertise_address or config.listen[0], what="address")
        if host in ("0.0.0.0", "::", ""):
            host = bound[0][0]
        scheme = "http" if config.insecure_plaintext else "https"
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{bound[0][1]}/"

    # open / close -----------------------------------------------------------------------------
    async def restore(self) -> None:
        """At manager start: serve if the cluster was left with web access enabled."""
        if self.wanted:
            try:
                await self._open()
            except WebBindError as exc:  # gRPC still serves; the administrator sees why in status
                log.error("web access enabled but cannot listen", error=str(exc))

    async def enable(self) -> None:
        async with self._lock:
            if self._runner is None:
                await self._open()  # raises WebBindError before the state is stored
            self.manager.store.set_meta(META_KEY, "on")

    async def disable(self) -> None:
        async with self._lock:
            self.manager.store.set_meta(META_KEY, "off")
            await self._close()

    async def shutdown(self) -> None:
        async with self._lock:
            await self._close()

    async def _open(self) -> None:
        from manager.web.app import build_app  # the routes import the page modules only when serving

        config = self.manager.config
        if not config.insecure_plaintext and self._ssl is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                context.load_cert_chain(str(config.tls_cert_file), str(config.tls_key_file))
            except (OSError, ssl.SSLError) as exc:
                raise WebBindError(f"cannot load the manager certificate for HTTPS: {exc}") from None
            self._ssl = context
        self.closing = asyncio.Event()
        runner = web.AppRunner(build_app(self), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S,
                               handle_signals=False)
        await runner.setup()
        try:
            for address in config.listen:
                host, _ = parse_host_port(address, what="listen address")
                await web.TCPSite(runner, host, config.web_port, ssl_context=self._ssl).start()
        except OSError as exc:
            await runner.cleanup()
            raise WebBindError(f"cannot listen for web access on port {config.web_port}: {exc.strerror or exc}") \
                from None
        self._runner = runner
        log.info("web access serving", url=self.base_url())

    async def _close(self) -> None:
        runner, self._runner = self._runner, None
        self.logins.clear()
        self.closing.set()  # live event streams end
        if runner is not None:
            await runner.cleanup()
            log.info("web access closed")

    # history ----------------------------------------------------------------------------------
    def sample(self) -> Sample:
        m = self.manager
        members = [r for r in m.registry.all() if r.is_member]
        by_state: dict[str, int] = {}
        for r in members:
            by_state[r.state.value] = by_state.get(r.state.value, 0) + 1
        ready = [r for r in members if r.state == MemberState.READY]
        view = m.jobs_view
        return Sample(at=m.clock(), members=by_state, pending_cores=view.pending_cores,
                      running_tasks=view.running_tasks,
                      usable_cores=sum(max(m.config.usable_cores(r.capacity.cores), 0) for r in ready),
                      ready_standard=sum(1 for r in ready if not r.spot),
                      ready_economy=sum(1 for r in ready if r.spot))

    async def sample_loop(self, stop: asyncio.Event) -> None:
        """Samples are kept whether or not the port is open: enabling shows the last day too."""
        from common.daemon import wait_for_stop

        while not stop.is_set():
            try:
                self.history.add(self.sample())
            except Exception:  # a failed sample leaves a gap in a plot, nothing more
                log.exception("history sample failed")
            await wait_for_stop(stop, self.manager.config.web_sample_interval_s)


def status_fields(access: Any) -> dict[str, Any]:
    return {"enabled": access.wanted, "serving": access.serving, "base_url": access.base_url(),
            "listening": [f"{h}:{p}" for h, p in access.listening()], "sessions": access.logins.live_sessions}
