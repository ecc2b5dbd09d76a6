#!/usr/bin/env bash
# Installs the Debian packages bench-cluster needs on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped, so `make test` can call it every time.
set -euo pipefail

PACKAGES=(
  # FUSE fast mounts (pyfuse3 builds against libfuse3)
  fuse3 libfuse3-dev pkg-config build-essential python3-dev python3-venv
  # Sun Grid Engine
  gridengine-master gridengine-exec gridengine-client
  # local provider: namespaces, bridge, loop-mounted /scratch images
  iproute2 util-linux e2fsprogs procps psmisc
  # instance metadata reachable by root only (common/imdsguard.py), also inside member namespaces
  nftables
  # mount benchmark peers
  bindfs rclone
  # Spark (master, workers, executors, the PySpark kernels' drivers)
  openjdk-17-jre-headless
  # packaging checks
  packer systemd systemd-container debootstrap
  # restricted workspaces: egress proxy (the OpenSSL build: SNI peek-and-splice), filter, test clients
  squid-openssl nftables openssl curl
  # web access browser tests (Debian's chromium driven by selenium through chromium-driver)
  chromium chromium-driver
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: installing ${missing[*]} needs root (run as root or with sudo)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
host=$(hostname)
# Preseed gridengine so the install asks nothing (cell 'default', this host is the master).
debconf-set-selections <<SEL
gridengine-common gridengine/cellname string default
gridengine-common gridengine/adminmail string root@localhost
gridengine-common shared/gridenginemaster string $host
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridengineconfig boolean true
gridengine-master gridengine/sgemasterhost string $host
gridengine-master shared/gridenginemaster string $host
gridengine-master shared/gridenginecell string default
gridengine-master shared/gridengineconfig boolean true
gridengine-client shared/gridenginemaster string $host
gridengine-client shared/gridenginecell string default
gridengine-client shared/gridengineconfig boolean true
gridengine-exec shared/gridenginemaster string $host
gridengine-exec shared/gridenginecell string default
gridengine-exec shared/gridengineconfig boolean true
SEL

# Keep package scripts from starting daemons (squid would listen on *:3128): bench-cluster starts
# its own, inside each restricted member.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

echo "system packages: installing ${missing[*]}"
for attempt in 1 2 3; do
  if apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  echo "apt attempt $attempt failed; retrying in $((attempt * 10)) s" >&2
  sleep $((attempt * 10))
done
echo "error: apt-get could not install: ${missing[*]}" >&2
exit 1
