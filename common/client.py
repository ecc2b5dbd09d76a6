"""How workspace-ctl (and tests, and bench-cluster) find and reach the manager.

Address: --manager HOST:PORT, else $BENCH_MANAGER, else the client config bench-cluster up wrote
($BENCH_CTL_CONFIG or /var/lib/bench-cluster/client.toml). Cluster CA (TLS trust root): --ca-file,
else $BENCH_CA_FILE, else the config's ca_file, else /etc/bench/tls/ca.crt.

Credential — the calling user's own, never a shared one: --credential-file, else
$BENCH_CREDENTIAL_FILE, else (root only) the config's admin_credential_file, else
~/.config/bench-cluster/credential of the calling user (home from the password database, not $HOME).
Who the user is, is decided by the manager from the credential; nothing the client says about its
name ($BENCH_USER included) is sent or believed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import tomllib
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc import aio

from common.addresses import parse_host_port
from common.auth import CredentialError, bearer, read_token_file
from common.tls import TlsError, channel_credentials

DEFAULT_CLIENT_CONFIG = Path("/var/lib/bench-cluster/client.toml")
DEFAULT_CA_FILE = Path("/etc/bench/tls/ca.crt")
USER_CREDENTIAL = Path(".config/bench-cluster/credential")


class ClientConfigError(Exception):
    pass


@dataclass(frozen=True)
class ManagerEndpoint:
    address: str
    credential: str
    tls: grpc.ChannelCredentials | None  # None: plaintext (benchmarks against --insecure-plaintext only)
    credential_source: str = ""

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.credential)

    def channel(self) -> aio.Channel:
        if self.tls is None:
            return aio.insecure_channel(self.address)
        return aio.secure_channel(self.address, self.tls)

    def sync_channel(self) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, self.tls)


def _client_config() -> tuple[Path, dict[str, object]]:
    path = Path(os.environ.get("BENCH_CTL_CONFIG", str(DEFAULT_CLIENT_CONFIG)))
    try:
        return path, tomllib.loads(path.read_text())
    except (FileNotFoundError, PermissionError):
        return path, {}
    except tomllib.TOMLDecodeError as exc:
        raise ClientConfigError(f"{path} is not valid TOML: {exc}") from None


def user_credential_path(name: str | None = None) -> Path:
    """~NAME/.config/bench-cluster/credential (NAME: the calling user by default)."""
    entry = pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())
    return Path(entry.pw_dir) / USER_CREDENTIAL


def _credential_candidates(flag: str | None, config: dict[str, object]) -> list[Path]:
    explicit = flag or os.environ.get("BENCH_CREDENTIAL_FILE")
    if explicit:
        return [Path(explicit)]
    candidates = []
    if os.getuid() == 0 and config.get("admin_credential_file"):
        candidates.append(Path(str(config["admin_credential_file"])))
    with contextlib.suppress(KeyError):  # a uid without a passwd entry has no home to look in
        candidates.append(user_credential_path())
    return candidates


def resolve_endpoint(manager: str | None, credential_file: str | None, ca_file: str | None = None,
                     plaintext: bool = False) -> ManagerEndpoint:
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
    tls = None
    if not plaintext:
        ca = Path(ca_file or os.environ.get("BENCH_CA_FILE") or str(config.get("ca_file") or DEFAULT_CA_FILE))
        try:
            tls = channel_credentials(ca)
        except TlsError as exc:
            raise ClientConfigError(f"{exc} (the cluster CA: pass --ca-file or set $BENCH_CA_FILE)") from None
    problems = []
    for path in _credential_candidates(credential_file, config):
        try:
            return ManagerEndpoint(str(address), read_token_file(path), tls, str(path))
        except CredentialError as exc:
            problems.append(str(exc))
    raise ClientConfigError(
        "no credential: " + "; ".join(problems or ["nothing to try"]) + ". An administrator creates yours with "
        "`workspace-ctl admin add-user NAME --role ...` (as root on the workspace node it is installed at "
        "~NAME/.config/bench-cluster/credential); or pass --credential-file / set $BENCH_CREDENTIAL_FILE")
