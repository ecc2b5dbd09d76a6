"""The web-access RPCs of ClusterService (a mixin, thin like the rest): on/off, status and the
one-time login link. Roles and audit lines come from the AuthInterceptor (manager.authz)."""

from __future__ import annotations

import grpc
from grpc import aio

from manager.core import ClusterManager
from manager.interceptors import current_principal
from protos.bench.v1 import cluster_pb2


class WebAccessRpcs:
    _m: ClusterManager

    def _web_status(self, message: str = "") -> cluster_pb2.WebAccessStatus:
        web = self._m.web
        return cluster_pb2.WebAccessStatus(
            enabled=web.wanted, base_url=web.base_url(), sessions=web.logins.live_sessions, message=message,
            listening=[f"{h}:{p}" for h, p in web.listening()])

    async def _require_web(self, context: aio.ServicerContext) -> None:
        if self._m.web is None:
            # the RPC exists; this manager's state does not allow it (a daemon started without its web app)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this manager runs without its web app (embedded, not the bench-manager daemon)")

    async def GetWebAccess(self, request: cluster_pb2.GetWebAccessRequest,
                           context: aio.ServicerContext) -> cluster_pb2.WebAccessStatus:
        await self._require_web(context)
        web = self._m.web
        message = ""
        if web.wanted and not web.serving:
            message = (f"enabled but not serving: port {self._m.config.web_port} could not be opened "
                       "(see the manager's log); `web-access disable` then `enable` retries")
        return self._web_status(message)

    async def SetWebAccess(self, request: cluster_pb2.SetWebAccessRequest,
                           context: aio.ServicerContext) -> cluster_pb2.WebAccessStatus:
        await self._require_web(context)
        from manager.web.server import WebBindError

        if request.enabled:
            try:
                await self._m.web.enable()
            except WebBindError as exc:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            return self._web_status("web access enabled: `workspace-ctl cluster web-access url` gives a login link")
        await self._m.web.disable()
        return self._web_status("web access disabled: the port is closed and every browser session ended")

    async def WebAccessLoginLink(self, request: cluster_pb2.WebAccessLoginLinkRequest,
                                 context: aio.ServicerContext) -> cluster_pb2.WebAccessLoginLinkResponse:
        await self._require_web(context)
        web = self._m.web
        if not web.serving:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "web access is disabled; an administrator enables it with "
                                "`workspace-ctl cluster web-access enable`")
        me = current_principal()
        assert me.role is not None  # the interceptor admits users only, and users have a role
        token, expires = web.logins.issue_link(me.name, me.role)
        # Not in the interceptor's audit table (that one lists mutations, none open to viewers),
        # but who asked for a way in is worth a line.
        self._m.activity.record(me.name, "web-access url", "ok", role=me.role.label, expires_at=round(expires))
        # The secret rides in the fragment: browsers never send it in a request line, so no access
        # log, proxy or Referer ever carries it; the login page POSTs it once.
        return cluster_pb2.WebAccessLoginLinkResponse(url=f"{web.base_url()}login#t={token}", expires_at_unix=expires)
