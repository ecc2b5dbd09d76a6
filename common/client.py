"""How workspace-ctl (and tests, and bench-cluster) find and reach the manager.

Address: --manager HOST:PORT, else $BENCH_MANAGER, else the client config bench-cluster up wrote
($BENCH_CTL_CONFIG or /var/lib/bench-cluster/client.toml). Token: --token-file, else
$BENCH_TOKEN_FILE, else the token_file named in that config.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from grpc import aio

from common.addresses import parse_host_port
from common.auth import USER_METADATA_KEY, bearer, read_token_file

DEFAULT_CLIENT_CONFIG = Path("/var/lib/bench-cluster/client.toml")


class ClientConfigError(Exception):
    pass


@dataclass(frozen=True)
class ManagerEndpoint:
    address: str
    token: str
    user: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (*bearer(self.token), (USER_METADATA_KEY, self.user))

    def channel(self) -> aio.Channel:
        return aio.insecure_channel(self.address)


def _client_config() -> tuple[Path, dict[str, object]]:
    path = Path(os.environ.get("BENCH_CTL_CONFIG", str(DEFAULT_CLIENT_CONFIG)))
    try:
        return path, tomllib.loads(path.read_text())
    except FileNotFoundError:
        return path, {}
    except tomllib.TOMLDecodeError as exc:
        raise ClientConfigError(f"{path} is not valid TOML: {exc}") from None


def resolve_endpoint(manager: str | None, token_file: str | None) -> ManagerEndpoint:
    config_path, config = _client_config()
    address = manager or os.environ.get("BENCH_MANAGER") or config.get("manager")
    if not address:
        raise ClientConfigError(
            "no manager address: pass --manager HOST:PORT, set $BENCH_MANAGER, or start a cluster with "
            f"`bench-cluster up` (which writes {config_path})")
    try:
        parse_host_port(str(address), what="manager address")
    except ValueError as exc:
        raise ClientConfigError(str(exc)) from None
    token_path = token_file or os.environ.get("BENCH_TOKEN_FILE") or config.get("token_file")
    if not token_path:
        raise ClientConfigError("no credential: pass --token-file, set $BENCH_TOKEN_FILE, or use the client "
                                f"config written by `bench-cluster up` ({config_path})")
    try:
        token = read_token_file(Path(str(token_path)))
    except Exception as exc:
        raise ClientConfigError(str(exc)) from None
    user = os.environ.get("BENCH_USER") or _login_name()
    return ManagerEndpoint(str(address), token, user)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
