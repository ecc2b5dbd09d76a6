"""The web app's routes: login, the page, the JSON API, the live event stream and the Spark proxy.

Authentication (guard middleware): a session cookie set by a one-time login link, or on /api/ and
/spark/ a user credential as `Authorization: Bearer ...` (the one workspace-ctl uses). Each API
route names the ClusterService RPC whose role it needs, so the web and the CLI share one role table
(manager.authz). State-changing requests with a cookie must carry the X-Bench-Web header (a
cross-site form or fetch cannot set it without a CORS preflight we never grant) on top of
SameSite=Strict.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web
from google.protobuf.json_format import MessageToDict

from common.activity_file import ActivityQuery
from common.logging import get_logger
from manager.authz import CLUSTER_SERVICE, Principal, authorise
from manager.convert import member_to_pb
from manager.errors import RequestError
from manager.web.auth import LoginRefused
from manager.web.history import member_hours

log = get_logger("web")

COOKIE = "__Host-bench_session"
CSRF_HEADER = "X-Bench-Web"
EVENT_TICK_S = 5.0
CACHE_TTL_S = 1.0
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
# The Spark UI is Spark's own HTML (inline scripts and styles): it gets a looser policy, still
# without any other origin.
SPARK_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; frame-ancestors 'none'; base-uri 'self'")
PAGES = ("/", "/members", "/jobs", "/mounts", "/logs", "/plots")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def static_dir() -> Path:
    return Path(str(resources.files("manager.web") / "static"))


def plotly_js() -> Path:
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


class ShortCache:
    """Bodies of the views every open page re-fetches after each event, built at most once per
    CACHE_TTL_S however many browsers watch (at 1,000 members /api/members takes ~60 ms to build).
    The views are the same for every role that may read them, so one body serves all."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bodies: dict[str, tuple[float, bytes]] = {}

    def get(self, key: str, build: Callable[[], Any]) -> web.Response:
        now = self._clock()
        hit = self._bodies.get(key)
        if hit is None or now - hit[0] > CACHE_TTL_S:
            hit = (now, json.dumps(build(), default=str).encode())
            self._bodies[key] = hit
        return web.Response(body=hit[1], content_type="application/json")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def build_app(access: Any) -> web.Application:
    manager = access.manager
    app = web.Application(middlewares=[_headers, _guard(access)], client_max_size=64 * 1024)
    static = static_dir()
    cache = ShortCache()

    # -- login ----------------------------------------------------------------------------------
    async def login_page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(static / "login.html")

    async def login(request: web.Request) -> web.StreamResponse:
        if request.headers.get(CSRF_HEADER) != "1":
            return _error(403, f"missing {CSRF_HEADER} header")
        try:
            body = await request.json()
            token = str(body.get("token", ""))
        except (ValueError, AttributeError):
            return _error(400, "body must be JSON {\"token\": ...}")
        try:
            session_id, session = access.logins.redeem(token)
        except LoginRefused as exc:
            manager.activity.record("unknown", "web-access login", "refused", reason=str(exc),
                                    peer=request.remote or "")
            return _error(403, f"{exc}: ask for a new one with `workspace-ctl cluster web-access url`")
        manager.activity.record(session.user, "web-access login", "ok", role=session.role.label,
                                peer=request.remote or "")
        response = _json({"user": session.user, "role": session.role.label, "redirect": "/"})
        response.set_cookie(COOKIE, session_id, httponly=True, secure=True, samesite="Strict", path="/",
                            max_age=int(access.logins.session_ttl_s))
        return response

    async def logout(request: web.Request) -> web.StreamResponse:
        session = access.logins.end(request.cookies.get(COOKIE, ""))
        if session is not None:
            manager.activity.record(session.user, "web-access logout", "ok")
        response = _json({"redirect": "/login"})
        response.del_cookie(COOKIE, path="/")
        return response

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(static / "index.html")

    async def plotly(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(plotly_js(), headers={"Cache-Control": "max-age=86400"})

    # -- API ------------------------------------------------------------------------------------
    async def whoami(request: web.Request) -> web.StreamResponse:
        p = _principal(request)
        return _json({"user": p.name, "role": p.role.label if p.role else ""})

    def overview_body() -> dict[str, Any]:
        status = MessageToDict(manager.status(), preserving_proto_field_name=True)
        status["web_access_url"] = access.base_url()
        status["now"] = manager.clock()
        return status

    def members_body() -> dict[str, Any]:
        pbs = manager.with_spark([member_to_pb(m, None) for m in manager.registry.all()])
        return {"members": [MessageToDict(m, preserving_proto_field_name=True) for m in pbs], "now": manager.clock()}

    async def overview(request: web.Request) -> web.StreamResponse:
        return cache.get("overview", overview_body)

    async def members(request: web.Request) -> web.StreamResponse:
        return cache.get("members", members_body)

    async def story(request: web.Request) -> web.StreamResponse:
        try:
            member = manager.resolve_member(request.match_info["name"])
        except RequestError as exc:
            return _error(404, exc.message)
        return _json({"member_id": member.member_id, "hostname": member.hostname,
                      "transitions": [vars(t) for t in manager.registry.history(member.member_id)]})

    async def jobs(request: web.Request) -> web.StreamResponse:
        return cache.get("jobs", manager.jobs_view.as_dicts)

    async def mounts(request: web.Request) -> web.StreamResponse:
        out = []
        for view in manager.mount_service.views():
            out.append({"mount_path": view.mount_path, "source": view.source, "mode": view.mode,
                        "nodes": [{"member_id": n.member_id, "state": n.state, "bytes_read": n.bytes_read,
                                   "errors": n.errors, "message": n.message} for n in view.nodes]})
        return _json({"mounts": out})

    async def scaler_log(request: web.Request) -> web.StreamResponse:
        tail = _int(request, "tail", 500, 1, 10_000)
        lines = await asyncio.to_thread(manager.scaler_log_tail, tail)
        text = request.query.get("q", "")
        return _json({"lines": [line for line in lines if text.lower() in line.lower()]})

    async def activity(request: web.Request) -> web.StreamResponse:
        hours = _float(request, "hours", 24.0, 0.0, 24 * 365)
        q = ActivityQuery(since_unix=manager.clock() - hours * 3600 if hours else 0.0,
                          user=request.query.get("user", "")[:64], action=request.query.get("action", "")[:64],
                          limit=_int(request, "limit", 500, 1, 5000))
        return _json({"entries": await asyncio.to_thread(manager.activity.query, q)})

    async def history(request: web.Request) -> web.StreamResponse:
        since = manager.clock() - _float(request, "hours", 24.0, 0.01, 48.0) * 3600
        since = max(since, _float(request, "after", 0.0, 0.0, float("inf")))
        samples = access.history.since(since)
        return _json({"samples": [vars(s) for s in samples], "operations": access.history.scale_operations(since),
                      "member_hours": member_hours(samples), "interval_s": manager.config.web_sample_interval_s})

    async def disable(request: web.Request) -> web.StreamResponse:
        p = _principal(request)
        manager.activity.record(p.name, "web-access disable", "ok", via="web")
        # Answer first: closing the port ends this very connection.
        asyncio.get_running_loop().call_later(0.2, lambda: asyncio.ensure_future(access.disable()))
        return _json({"message": "web access disabled; the port closes now"})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue = manager.events.subscribe()
        session_id = request.cookies.get(COOKIE, "")
        closing = access.closing
        try:
            await response.write(b"event: hello\ndata: {}\n\n")
            while not closing.is_set():
                if session_id and request.get("via") == "session" and access.logins.session(session_id) is None:
                    break  # logged out or expired: the stream stops with the session
                try:
                    event = await asyncio.wait_for(queue.get(), EVENT_TICK_S)
                except TimeoutError:
                    await response.write(f"event: tick\ndata: {time.time():.0f}\n\n".encode())
                    continue
                data = json.dumps({"at": event.at, "kind": event.kind, "member_id": event.member_id,
                                   "message": event.message})
                await response.write(f"event: cluster\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            manager.events.unsubscribe(queue)
        return response

    async def spark(request: web.Request) -> web.StreamResponse:
        from manager.web.spark_proxy import proxy

        return await proxy(request, manager.config.spark_ui_url)

    r = app.router
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    for path in PAGES:
        r.add_get(path, page)
    r.add_static("/static/", static, append_version=False)
    r.add_get("/vendor/plotly.min.js", plotly)
    r.add_get("/api/whoami", _needs("WhoAmI")(whoami))
    r.add_get("/api/overview", _needs("GetStatus")(overview))
    r.add_get("/api/members", _needs("ListMembers")(members))
    r.add_get("/api/members/{name}/story", _needs("ListMembers")(story))
    r.add_get("/api/jobs", _needs("GetStatus")(jobs))
    r.add_get("/api/mounts", _needs("GetMounts")(mounts))
    r.add_get("/api/scaler-log", _needs("GetScalerLog")(scaler_log))
    r.add_get("/api/activity", _needs("QueryActivity")(activity))
    r.add_get("/api/history", _needs("GetStatus")(history))
    r.add_get("/api/events", _needs("WatchEvents")(events))
    r.add_post("/api/web-access/disable", _needs("SetWebAccess")(disable))
    r.add_route("*", "/spark", _needs("GetStatus")(spark))
    r.add_route("*", "/spark/{tail:.*}", _needs("GetStatus")(spark))
    return app


def _principal(request: web.Request) -> Principal:
    principal: Principal = request["principal"]
    return principal


def _needs(method: str) -> Callable[[Handler], Handler]:
    """The route needs the role ClusterService's `method` needs (one role table for CLI and web)."""
    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            decision = authorise(_principal(request), CLUSTER_SERVICE, method)
            if not decision.allowed:
                return _error(403, decision.message)
            return await handler(request)
        return checked
    return wrap


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(request.query.get(name, default)), low), high)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a whole number") from None


def _float(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    try:
        value = float(request.query.get(name, default))
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be a number") from None
    return min(max(value, low), high) if value == value else default  # NaN -> default


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    if not response.prepared:
        h = response.headers
        spark = request.path == "/spark" or request.path.startswith("/spark/")
        h.setdefault("Content-Security-Policy", SPARK_CSP if spark else CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/") or request.path in ("/login",):
            h.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException) and not isinstance(response, web.HTTPRedirection):
        raise response
    return response


def _guard(access: Any) -> Any:  # an aiohttp middleware
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in ("/login", "/logout") or path.startswith("/static/"):
            return await handler(request)
        api = path.startswith("/api/")
        spark = path == "/spark" or path.startswith("/spark/")
        principal = None
        auth = request.headers.get("Authorization", "")
        if auth and (api or spark):
            principal = access.manager.credentials.principal(auth.removeprefix("Bearer ").strip()) \
                if auth.startswith("Bearer ") else None
            if principal is None or principal.kind != "user":
                return _error(401, "invalid, expired or revoked credential")
            request["via"] = "bearer"
        else:
            session = access.logins.session(request.cookies.get(COOKIE, ""))
            # A removed user's sessions end, and a changed role applies at once.
            role = None if session is None else access.manager.credentials.user_role(session.user)
            if session is not None and role is not None:
                principal = Principal("user", session.user, role)
                request["via"] = "session"
                if request.method not in ("GET", "HEAD") and request.headers.get(CSRF_HEADER) != "1":
                    return _error(403, f"state-changing requests need the {CSRF_HEADER} header")
        if principal is None:
            if api:
                return _json({"error": "log in first: open the link from `workspace-ctl cluster web-access url`, "
                                       "or send Authorization: Bearer <your credential>"}, 401)
            raise web.HTTPSeeOther("/login")
        request["principal"] = principal
        return await handler(request)
    return guard
