from __future__ import annotations

import time

import pytest

from agent.spot import MetadataClient, parse_notice
from tests.imds import MetadataServer


def test_no_notice_then_notice_through_the_token_flow() -> None:
    with MetadataServer() as imds:
        client = MetadataClient(imds.url)
        assert client.poll() is None
        deadline = time.time() + 120
        imds.announce("terminate", deadline)
        notice = client.poll()
        assert notice is not None and notice.action == "terminate"
        assert abs(notice.deadline_unix - deadline) < 1.0
        assert imds.requests[0] == "PUT /latest/api/token"  # IMDSv2: token first


def test_expired_token_is_renewed() -> None:
    with MetadataServer() as imds:
        client = MetadataClient(imds.url)
        client._token = "stale"
        with pytest.raises(OSError):
            client.poll()  # 401
        assert client.poll() is None  # fetched a new token
        assert imds.requests.count("PUT /latest/api/token") == 1


@pytest.mark.parametrize("body", [{}, {"action": "terminate"}, [], {"action": "stop", "time": "yesterday"}])
def test_malformed_notice_is_rejected(body: object) -> None:
    with pytest.raises(ValueError):
        parse_notice(body)
