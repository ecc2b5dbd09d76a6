#!/usr/bin/env bash
# Installs a bench-cluster node (either role) onto a Debian 12 root: Debian packages (SGE, FUSE, Python),
# /opt/bench/venv with the project's wheel, the systemd units, and the /data and /scratch layout.
#
# Run by the Packer template on the build instance, and by the tests inside a freshly debootstrapped
# root (chroot), so what ships in the image is what the tests prove installs on a clean Debian.
# Nothing is started here: the role is only known at first boot (packer/scripts/first-boot.sh).
#
# usage: install-node.sh --wheel PATH [--src DIR]
#   --wheel  the bench_cluster-*.whl to install (pip fetches its dependencies from the index
#            configured by PIP_INDEX_URL / PIP_FIND_LINKS, PyPI by default)
#   --src    directory holding systemd/ and packer/scripts/ (default: this checkout)
set -euo pipefail

die() { echo "install-node: error: $*" >&2; exit 1; }
say() { echo "install-node: $*"; }
# retry WHAT CMD...: three attempts with a growing pause (mirrors and PyPI fail now and then), then give up.
retry() {
  local what=$1 attempt
  shift
  for attempt in 1 2 3; do
    "$@" && return 0
    [ "$attempt" = 3 ] && break
    say "$what attempt $attempt failed; retrying in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
  return 1
}

wheel=""
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheel) [ $# -ge 2 ] || die "--wheel needs a path"; wheel="$2"; shift 2 ;;
    --src) [ $# -ge 2 ] || die "--src needs a directory"; src="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

[ -n "$wheel" ] || die "--wheel PATH is required"
[ -f "$wheel" ] || die "wheel $wheel does not exist"
case "$wheel" in *.whl) ;; *) die "$wheel is not a .whl file" ;; esac
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -r /etc/debian_version ] || die "not a Debian system (no /etc/debian_version)"
for unit in bench-manager.service bench-agent.service bench-first-boot.service bench-imds-guard.service \
    sge-qmaster.service sge-execd.service bench-spark-master.service; do
  [ -f "$src/systemd/$unit" ] || die "$src/systemd/$unit is missing (use --src to point at the checkout)"
done
[ -f "$src/packer/scripts/first-boot.sh" ] || die "$src/packer/scripts/first-boot.sh is missing"

PACKAGES=(
  # Sun Grid Engine: both roles carry master and exec; first boot enables the one the role needs.
  gridengine-master gridengine-exec gridengine-client
  # FUSE fast mounts; pyfuse3 compiles against libfuse3 when no wheel fits.
  fuse3 libfuse3-dev pkg-config build-essential
  python3 python3-venv python3-dev
  # first boot: format the /scratch volume; agent: interfaces and processes.
  e2fsprogs iproute2 procps ca-certificates
  # bench-imds-guard.service: the instance metadata service reachable by root only.
  nftables
  # Spark (pyspark's bundled jars): master, slot workers, executors and the PySpark kernels' drivers.
  openjdk-17-jre-headless
  # restricted workspaces: egress proxy (OpenSSL build: SNI peek-and-splice)
  squid-openssl openssl
)

# Keep package scripts from starting daemons while building (the image's hostname is not the node's).
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 0755 "$policy"
  own_policy=1
fi
cleanup() { if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
# gridengineconfig=false: no cell is initialised for the build host; first-boot.sh does that with the
# node's real hostname (manager role) or points the node at its manager (member role).
debconf-set-selections <<'SEL'
gridengine-common shared/gridengineconfig boolean false
gridengine-common shared/gridenginecell string default
gridengine-common shared/gridenginemaster string localhost
gridengine-master shared/gridengineconfig boolean false
gridengine-client shared/gridengineconfig boolean false
gridengine-exec shared/gridengineconfig boolean false
SEL

say "installing Debian packages"
apt_install() { apt-get update -q && apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
retry apt apt_install || die "apt-get could not install ${PACKAGES[*]}"

say "creating accounts and directories"
getent group bench >/dev/null || groupadd --system bench
# Workspace users who may edit the PySpark kernels' spark-defaults.conf (usermod -aG bench-users USER).
getent group bench-users >/dev/null || groupadd bench-users
getent passwd bench-manager >/dev/null || useradd --system --user-group --groups bench \
  --home-dir /var/lib/bench-manager --no-create-home --shell /usr/sbin/nologin bench-manager
usermod -aG bench-users bench-manager  # it gives the conf files that group
install -d -m 0755 /opt/bench /data /data/mounts
install -d -m 2775 -o root -g bench /data/logs
install -d -m 0755 -o bench-manager -g bench /data/.spark
# The kernels' spark-defaults.conf directories: bench-users edit the files, and files saved there keep that
# group (setgid, which the manager's unit may not set itself: RestrictSUIDSGID=yes).
install -d -m 0755 -o bench-manager -g bench /data/.spark/local /data/.spark/remote
install -d -m 2775 -o bench-manager -g bench-users /data/.spark/local/conf /data/.spark/remote/conf \
  /data/.spark/remote/conf-dynamic
install -d -m 1777 /scratch
# 0755: users read the cluster CA (tls/ca.crt); every secret inside is created 0600/0640 on its own.
install -d -m 0755 -o root -g bench /etc/bench
install -d -m 0700 /var/lib/bench-agent /var/lib/bench
install -d -m 0750 -o bench-manager -g bench-manager /var/lib/bench-manager

say "installing $wheel into /opt/bench/venv"
if [ ! -x /opt/bench/venv/bin/python ]; then
  python3 -m venv /opt/bench/venv
fi
retry pip /opt/bench/venv/bin/pip install --disable-pip-version-check --no-input -q "$wheel" \
  || die "pip could not install $wheel"
for entry in bench-manager bench-agent bench-spark-master bench-spark-kernels; do
  [ -x "/opt/bench/venv/bin/$entry" ] || die "the wheel did not install the $entry entry point"
done
/opt/bench/venv/bin/python -c 'import manager.main, agent.main' || die "the installed package does not import"

say "installing systemd units"
for unit in bench-manager.service bench-agent.service bench-first-boot.service bench-imds-guard.service \
    sge-qmaster.service sge-execd.service bench-spark-master.service; do
  install -m 0644 "$src/systemd/$unit" "/etc/systemd/system/$unit"
done
install -m 0755 "$src/packer/scripts/first-boot.sh" /usr/local/sbin/bench-first-boot
if [ ! -e /etc/bench/bench.env ]; then
  install -m 0640 -o root -g bench "$src/systemd/bench.env" /etc/bench/bench.env
fi
# Debian's SysV scripts would start SGE with the build host's cell; our foreground units replace them.
ln -sf /dev/null /etc/systemd/system/gridengine-master.service
ln -sf /dev/null /etc/systemd/system/gridengine-exec.service
# Only the first-boot unit is enabled in the image; it enables the role's units once the role is known.
systemctl enable bench-first-boot.service
# Both roles: metadata reachable by root only, before SGE, the agent or any job starts.
systemctl enable bench-imds-guard.service
systemctl disable bench-manager.service bench-agent.service sge-qmaster.service sge-execd.service \
  bench-spark-master.service 2>/dev/null || true
say "installing the PySpark kernels (PySpark – Local / Remote / Remote - Dynamic) for the workspace node"
/opt/bench/venv/bin/bench-spark-kernels --python /opt/bench/venv/bin/python || die "kernel specs not installed"
# The stock squid service stays off: a restricted node runs its own (egress rules of the workspace).
systemctl disable squid.service 2>/dev/null || true

version=$(/opt/bench/venv/bin/python -c 'import importlib.metadata as m; print(m.version("bench-cluster"))')
printf 'bench-cluster %s\ninstalled %s\n' "$version" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > /etc/bench/image-release
say "done: bench-cluster $version"
