"""/spark/ -> the Spark master's web UI, streamed.

The master runs with spark.ui.reverseProxy=true and spark.ui.reverseProxyUrl=<web base>/spark
(manager/spark/master.py), so Spark writes its links under /spark/ and itself proxies the workers'
and applications' UIs (/spark/proxy/<id>/...) through the master: one upstream is enough.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

HOP_HEADERS = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                         "transfer-encoding", "upgrade", "content-length", "content-encoding", "host", "cookie",
                         "authorization", "set-cookie"})
TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=5)


async def proxy(request: web.Request, upstream: str) -> web.StreamResponse:
    if not upstream:
        return web.json_response({"error": "Spark is not set up on this cluster"}, status=404)
    tail = request.path[len("/spark"):] or "/"
    url = upstream.rstrip("/") + tail
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
    body = await request.read() if request.can_read_body else None
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT, auto_decompress=False) as client, \
                client.request(request.method, url, params=request.query, headers=headers, data=body,
                               allow_redirects=False) as upstream_response:
            response = web.StreamResponse(status=upstream_response.status)
            for key, value in upstream_response.headers.items():
                if key.lower() not in HOP_HEADERS:
                    response.headers[key] = value
            if "Content-Encoding" in upstream_response.headers:
                response.headers["Content-Encoding"] = upstream_response.headers["Content-Encoding"]
            location = response.headers.get("Location", "")
            if location.startswith(upstream.rstrip("/")):
                response.headers["Location"] = "/spark" + location[len(upstream.rstrip("/")):]
            await response.prepare(request)
            async for chunk in upstream_response.content.iter_chunked(64 * 1024):
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        return web.json_response({"error": f"the Spark master UI at {upstream} is unreachable: {exc}"}, status=502)
