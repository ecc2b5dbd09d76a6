"""Economy mode: watch the instance metadata service for a spot interruption notice.

IMDSv2 flow: PUT /latest/api/token (with a TTL header) gives a session token; GET
/latest/meta-data/spot/instance-action with that token answers 404 until the cloud schedules the
interruption, then {"action": "terminate", "time": "2026-11-25T08:22:00Z"}. The notice is sent to
the manager once (it drains the member against the deadline); polling goes on with backoff on errors.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime

from agent.config import AgentConfig
from common.daemon import wait_for_stop
from common.logging import get_logger
from protos.bench.v1 import agent_pb2

log = get_logger("spot")

TOKEN_PATH = "/latest/api/token"
NOTICE_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_TTL_S = 21600
REQUEST_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Notice:
    action: str
    deadline_unix: float


class MetadataClient:
    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")
        self._token: str | None = None

    def _token_value(self) -> str:
        if self._token is None:
            request = urllib.request.Request(self._base + TOKEN_PATH, method="PUT",
                                             headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)})
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                self._token = response.read().decode().strip()
        return self._token

    def poll(self) -> Notice | None:
        """One look at the notice; None when there is none. Blocking (run in a thread)."""
        request = urllib.request.Request(self._base + NOTICE_PATH,
                                         headers={"X-aws-ec2-metadata-token": self._token_value()})
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code == 401:  # the session token expired: get a new one next time
                self._token = None
            raise
        return parse_notice(body)


def parse_notice(body: object) -> Notice:
    if not isinstance(body, dict) or "action" not in body or "time" not in body:
        raise ValueError(f"unexpected instance-action document: {body!r}")
    when = datetime.fromisoformat(str(body["time"]).replace("Z", "+00:00"))
    return Notice(action=str(body["action"]), deadline_unix=when.timestamp())


async def watch_spot_notices(config: AgentConfig, notices: asyncio.Queue[agent_pb2.SpotNotice],
                             stop: asyncio.Event) -> None:
    client = MetadataClient(config.spot_metadata_url)
    sent: Notice | None = None
    failures = 0
    while not stop.is_set():
        try:
            notice = await asyncio.to_thread(client.poll)
            failures = 0
        except (OSError, ValueError) as exc:
            failures += 1
            notice = None
            if failures in (1, 10) or failures % 100 == 0:
                log.warning("metadata service not answering", url=config.spot_metadata_url, error=str(exc),
                            failures=failures)
        if notice is not None and notice != sent:
            log.warning("spot interruption notice", action=notice.action, deadline=notice.deadline_unix)
            notices.put_nowait(agent_pb2.SpotNotice(action=notice.action, deadline_unix=notice.deadline_unix))
            sent = notice
        # back off while the service fails (up to 60 s), poll at the configured rate otherwise
        await wait_for_stop(stop, min(config.spot_poll_s * (2 ** min(failures, 6)), 60.0))
