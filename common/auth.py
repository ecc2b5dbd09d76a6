"""Cluster credentials: bearer tokens carried in gRPC metadata.

Agents present the cluster (agent) token, workspace-ctl presents the user token; the manager checks
each against the right secret in constant time.
"""

from __future__ import annotations

import secrets
from pathlib import Path

AUTH_METADATA_KEY = "authorization"
USER_METADATA_KEY = "x-bench-user"
MIN_TOKEN_LENGTH = 16


class CredentialError(Exception):
    pass


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),)


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise CredentialError(f"token file {path} does not exist") from None
    except PermissionError:
        raise CredentialError(f"token file {path} is not readable by this user") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise CredentialError(f"token in {path} is shorter than {MIN_TOKEN_LENGTH} characters")
    return token


def write_new_token(path: Path) -> str:
    """Create a fresh random token readable only by its owner."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(token + "\n")
    return token


def token_matches(presented: str | None, expected: str) -> bool:
    if not presented or not presented.startswith("Bearer "):
        return False
    return secrets.compare_digest(presented[len("Bearer "):].encode(), expected.encode())
