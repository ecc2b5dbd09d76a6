"""Test web servers standing in for the internet of a restricted workspace: plain HTTP and HTTPS
(a self-signed certificate: only the SNI matters to the proxy) on every address given, and one
extra port. Each answer names the address that served it, the Host header and the path, so a test
sees which server a request really reached.

Usage (inside the servers' network namespace): python -m tests.e2e.egress_servers CERT KEY ADDR...
"""

from __future__ import annotations

import http.server
import ssl
import sys
import threading

HTTP_PORT = 80
HTTPS_PORT = 443
OTHER_PORT = 8080


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        address = self.connection.getsockname()[0]
        body = (f"served-by={address} host={self.headers.get('Host', '')} "
                f"path={self.path}\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(address: str, port: int, tls: ssl.SSLContext | None) -> threading.Thread:
    server = http.server.ThreadingHTTPServer((address, port), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def main(argv: list[str]) -> int:
    cert, key, *addresses = argv
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    threads = []
    for address in addresses:
        threads += [serve(address, HTTP_PORT, None), serve(address, HTTPS_PORT, tls),
                    serve(address, OTHER_PORT, None)]
    print("serving", flush=True)
    for thread in threads:
        thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
