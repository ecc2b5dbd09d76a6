"""A small instance-metadata (IMDSv2) server for tests: token flow + spot instance-action."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "test-imds-token"


class MetadataServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.notice: dict[str, str] | None = None  # what every instance sees
        self.notices_by_ip: dict[str, dict[str, str]] = {}  # per instance (one server for many members)
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:
                server.requests.append(f"PUT {self.path}")
                if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    self._reply(200, TOKEN)
                else:
                    self._reply(400, "missing TTL header")

            def do_GET(self) -> None:
                server.requests.append(f"GET {self.path}")
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._reply(401, "")
                elif self.path == "/latest/meta-data/spot/instance-action" and (
                        notice := server.notice_for(self.client_address[0])):
                    self._reply(200, json.dumps(notice))
                else:
                    self._reply(404, "Not Found")

            def _reply(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> MetadataServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def notice_for(self, client_ip: str) -> dict[str, str] | None:
        return self.notices_by_ip.get(client_ip, self.notice)

    def announce(self, action: str, deadline_unix: float, *, to_ip: str | None = None) -> None:
        """Schedule an interruption: for every instance, or only the one at `to_ip`."""
        when = datetime.fromtimestamp(deadline_unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if to_ip is None:
            self.notice = {"action": action, "time": when}
        else:
            self.notices_by_ip[to_ip] = {"action": action, "time": when}
