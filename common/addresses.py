"""HOST:PORT parsing with errors a person can act on."""

from __future__ import annotations


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{what} must look like HOST:PORT (e.g. 127.0.0.1:50051), got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{what} port must be 0..65535, got {port}")
    return host.strip("[]"), port
