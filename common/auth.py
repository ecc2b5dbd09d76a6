"""Credentials on the wire: bearer secrets carried in gRPC metadata, over TLS only.

Every principal has its own: a member's agent presents its member credential, workspace-ctl the
calling user's credential, a booting member its one-time join token. The manager maps each to who
it belongs to (manager.credentials); nothing else a client says about itself is believed.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from common.tls import write_private

AUTH_METADATA_KEY = "authorization"
MIN_TOKEN_LENGTH = 16


class CredentialError(Exception):
    pass


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTH_METADATA_KEY, f"Bearer {token}"),)


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise CredentialError(f"credential file {path} does not exist") from None
    except PermissionError:
        raise CredentialError(f"credential file {path} is not readable by this user") from None
    except OSError as exc:
        raise CredentialError(f"credential file {path} cannot be read: {exc.strerror}") from None
    if len(token) < MIN_TOKEN_LENGTH:
        raise CredentialError(f"credential in {path} is shorter than {MIN_TOKEN_LENGTH} characters")
    return token


def write_new_token(path: Path, prefix: str = "", mode: int = 0o600, group: int = -1) -> str:
    """Create a fresh random secret file, created with its final mode (never readable beyond it)."""
    token = prefix + secrets.token_urlsafe(32)
    write_private(path, (token + "\n").encode(), mode, group)
    return token
