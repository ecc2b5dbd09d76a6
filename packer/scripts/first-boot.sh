#!/usr/bin/env bash
# First boot of a bench-node image: take the role (manager or member) named in the EC2 user-data.
#
# Sources, first found wins: /etc/bench/user-data.toml (images booted outside EC2, and the tests),
# then the instance metadata service (IMDSv2). The user-data format is manager/providers/ec2_userdata.py.
# Writes /etc/bench/agent.toml (+ manager.toml, the cluster CA and the manager's certificate and
# credentials on the manager role; the CA and the one-time join token on a member), points SGE at
# the manager (or initialises the cell on the manager), formats a spare volume as /scratch, then enables
# and starts the role's units. Idempotent until it succeeds; bench-first-boot.service runs it once.
set -euo pipefail

ETC=${BENCH_ETC:-/etc/bench}
DONE=/var/lib/bench/first-boot.done
IMDS=${BENCH_IMDS_URL:-http://169.254.169.254}
PY=/opt/bench/venv/bin/python
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default

die() { echo "bench-first-boot: error: $*" >&2; exit 1; }
say() { echo "bench-first-boot: $*"; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -x "$PY" ] || die "$PY missing: the image was not built with install-node.sh"

# The Python half parses and writes the configuration; it prints two plain lines (role, manager host)
# that the shell reads as data and validates: nothing derived from user-data is ever evaluated.
settings=$(ETC="$ETC" IMDS="$IMDS" "$PY" - <<'PYEOF'
import ipaddress, json, os, re, socket, time, tomllib, urllib.request
from pathlib import Path

etc, imds = Path(os.environ["ETC"]), os.environ["IMDS"]
MARKER = "#bench-cluster-userdata v1"
HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
AGENT_STATE = Path("/var/lib/bench-agent")

def imds_get(path: str, token: str) -> str:
    request = urllib.request.Request(f"{imds}{path}", headers={"X-aws-ec2-metadata-token": token})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()

def imds_token() -> str:
    request = urllib.request.Request(f"{imds}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()

override = etc / "user-data.toml"
local_dns = ""
if override.exists():
    text, node_id, ip = override.read_text(), socket.gethostname(), ""
else:
    for attempt in range(8):  # the metadata service can lag the network by a few seconds
        try:
            token = imds_token()
            text = imds_get("/latest/user-data", token)
            node_id = imds_get("/latest/meta-data/instance-id", token)
            ip = imds_get("/latest/meta-data/local-ipv4", token)
            local_dns = imds_get("/latest/meta-data/local-hostname", token)
            break
        except OSError as error:
            last = error
            time.sleep(min(2 ** attempt, 30))
    else:
        raise SystemExit(f"bench-first-boot: no user-data from {imds}: {last}")
if not text.startswith(MARKER):
    raise SystemExit(f"bench-first-boot: user-data does not start with {MARKER!r}")
doc = tomllib.loads(text)
role = doc.get("role")
if role not in ("member", "manager"):
    raise SystemExit(f"bench-first-boot: user-data role must be member or manager, got {role!r}")
for key in ("cluster_id", "manager_address") + (("join_token", "ca_cert") if role == "member" else ()):
    if not doc.get(key):
        raise SystemExit(f"bench-first-boot: user-data lacks {key}")
node_id = str(doc.get("node_id") or node_id)
manager_host, _, manager_port = str(doc["manager_address"]).rpartition(":")
if not HOST.match(manager_host) or not manager_port.isdigit() or not 0 < int(manager_port) < 65536:
    raise SystemExit(f"bench-first-boot: manager_address {doc['manager_address']!r} is not HOST:PORT")
if not NODE_ID.match(node_id):
    raise SystemExit(f"bench-first-boot: node id {node_id!r} is not a valid member id")

def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # e.g. the manager's ec2 settings: an inline table, nested as given
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string

def gid_of(name: str) -> int:
    import grp
    return grp.getgrnam(name).gr_gid

def write(path: Path, content: str, mode: int, group: str = "root") -> None:
    """Created with its final owner and mode (O_EXCL on a fresh name, then renamed into place): a secret
    is never readable beyond `mode`, not even for an instant."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode & 0o600)
    try:
        os.fchown(fd, 0, gid_of(group))
        os.fchmod(fd, mode)
        os.write(fd, content.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)

def table(values: dict) -> str:
    return "".join(f"{key} = {toml_value(value)}\n" for key, value in values.items())

tls = etc / "tls"
agent = {
    "manager": f"{'127.0.0.1' if role == 'manager' else manager_host}:{manager_port}",
    "ca_file": str(tls / "ca.crt"),
    "node_id": node_id,
    "role": role,
    "log_format": "json",
}
if role == "member":
    agent.update(cores=int(doc.get("cores", 0)), memory_bytes=int(doc.get("memory_bytes", 0)),
                 credential_file=str(AGENT_STATE / "credential"), join_token_file=str(AGENT_STATE / "join.token"),
                 # orphaned (manager gone, dynamic cluster): an OS shutdown, which the launch's
                 # InstanceInitiatedShutdownBehavior=terminate turns into a termination
                 node_shutdown="poweroff", orphan_timeout_s=float(doc.get("orphan_timeout_s", 600.0)))
    if not override.exists():
        agent["spot_metadata_url"] = imds
    # The cluster CA (public) and the one-time join token (single use, minutes): nothing long-lived.
    tls.mkdir(mode=0o755, exist_ok=True)
    write(tls / "ca.crt", str(doc["ca_cert"]), 0o644)
    AGENT_STATE.mkdir(mode=0o700, exist_ok=True)
    if not (AGENT_STATE / "credential").exists():
        write(AGENT_STATE / "join.token", str(doc["join_token"]) + "\n", 0o600)
else:
    agent["credential_file"] = str(etc / "manager-agent.credential")
if ip:
    agent["advertise_ip"] = ip
write(etc / "agent.toml", "# written by bench-first-boot from user-data\n" + table(agent), 0o644)

if role == "manager":
    import secrets
    from common.tls import create_ca, issue_server_cert
    # The cluster CA is made here, with the cluster: the manager's certificate names every address
    # members and users dial (IMDS private IP and DNS name on EC2, the host name, loopback).
    if not (tls / "ca.crt").exists():
        tls.mkdir(mode=0o755, exist_ok=True)
        ca = create_ca(tls, str(doc["cluster_id"]))
        sans = ["127.0.0.1", "localhost", socket.gethostname(), manager_host] + [a for a in (ip, local_dns) if a]
        issue_server_cert(ca, tls, sans, key_mode=0o640, key_group=gid_of("bench"))
    for name in ("manager-agent.credential", "root.credential"):
        if not (etc / name).exists():  # the manager (group bench) checks them; root uses them
            write(etc / name, f"{'bcm_' if name.startswith('manager') else 'bcu_'}{secrets.token_urlsafe(32)}\n",
                  0o640, "bench")
    manager = {
        "listen": [f"0.0.0.0:{manager_port}"],
        "cluster_id": str(doc["cluster_id"]),
        "tls_cert_file": str(tls / "manager.crt"),
        "tls_key_file": str(tls / "manager.key"),
        "tls_ca_file": str(tls / "ca.crt"),
        "host_agent_id": node_id,
        "host_agent_credential_file": str(etc / "manager-agent.credential"),
        "admin_credential_file": str(etc / "root.credential"),
        "db": "/var/lib/bench-manager/state.db",
        "data_root": "/data",
        "log_format": "json",
    }
    if doc.get("spark", True):
        # Spark (issue 16): the master (bench-spark-master, on this node) and the PySpark kernels' drivers
        # (the workspace node is this node) on the address members reach this node at.
        spark_host = ip or manager_host
        manager.update(spark_master_url=f"spark://{spark_host}:7077", spark_ui_url=f"http://{spark_host}:8080",
                       spark_driver_host=spark_host, spark_python="/opt/bench/venv/bin/python")
        write(etc / "spark.env", f"BENCH_SPARK_HOST={spark_host}\n", 0o644)
    manager.update(doc.get("manager", {}))  # provider, mode, members, … from the launcher
    write(etc / "manager.toml", "# written by bench-first-boot from user-data\n" + table(manager), 0o640, "bench")
    # root on the manager node is an administrator: workspace-ctl finds this client config.
    write(Path("/var/lib/bench-cluster/client.toml"),
          f'manager = "127.0.0.1:{manager_port}"\nca_file = "{tls / "ca.crt"}"\n'
          f'admin_credential_file = "{etc / "root.credential"}"\n', 0o644)

print(role)
print(manager_host)
PYEOF
)
{ read -r ROLE; read -r MANAGER_HOST; } <<< "$settings"
case "$ROLE" in manager|member) ;; *) die "unexpected role from the configuration step: ${ROLE@Q}" ;; esac
[[ "$MANAGER_HOST" =~ ^[A-Za-z0-9.-]{1,253}$ ]] || die "unexpected manager host: ${MANAGER_HOST@Q}"
say "role $ROLE (manager host $MANAGER_HOST)"

common=$SGE_ROOT/$SGE_CELL/common
install -d -m 0755 -o sgeadmin -g sgeadmin "$SGE_ROOT/$SGE_CELL" "$common"
if [ "$ROLE" = manager ]; then
  me=$(hostname)
  # SGE refuses clients whose name and address disagree; make sure this host's name resolves.
  if ! getent hosts "$me" >/dev/null; then
    echo "127.0.1.1 $me" >> /etc/hosts
  fi
  echo "$me" > "$common/act_qmaster"
  # Local clients (bench-manager's qconf) may connect from 127.0.0.1, which reverse-resolves to
  # localhost; SGE then refuses them as a different host unless localhost is an alias of this one.
  if ! grep -qs "^$me " "$common/host_aliases"; then
    echo "$me localhost" >> "$common/host_aliases"
  fi
  if [ ! -e /var/spool/gridengine/spooldb/sge ]; then
    install -d -m 0755 -o sgeadmin -g sgeadmin /var/spool/gridengine /var/spool/gridengine/spooldb \
      /var/spool/gridengine/qmaster /var/spool/gridengine/qmaster/job_scripts
    su -s /bin/sh -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL /var/spool/gridengine/spooldb sgeadmin" sgeadmin
    # bench-manager runs qconf/qmod under its own name, so it must be an SGE manager.
    su -s /bin/sh -c "SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL /usr/lib/gridengine/spooldefaults managers sgeadmin root bench-manager" sgeadmin
  fi
  units=(sge-qmaster.service bench-manager.service bench-agent.service)
  # the Spark master only where first boot configured Spark (user-data `spark = false` leaves it out)
  [ -e /etc/bench/spark.env ] && units+=(bench-spark-master.service)
else
  echo "$MANAGER_HOST" > "$common/act_qmaster"
  units=(sge-execd.service bench-agent.service)
fi
chown sgeadmin:sgeadmin "$common/act_qmaster"

# /scratch: the launcher attaches a dedicated volume as the second disk; an unused one is formatted.
for disk in /dev/nvme1n1 /dev/xvdb /dev/sdb; do
  if [ -b "$disk" ] && ! blkid "$disk" >/dev/null 2>&1 && ! grep -q " /scratch " /proc/mounts; then
    say "formatting $disk as /scratch"
    mkfs.ext4 -q -L bench-scratch "$disk"
    echo "LABEL=bench-scratch /scratch ext4 defaults,noatime,nofail 0 2" >> /etc/fstab
    mount /scratch
    chmod 1777 /scratch
    break
  fi
done

systemctl enable "${units[@]}"
# --no-block: the units are ordered after this one, so waiting for them here would deadlock boot.
systemctl start --no-block "${units[@]}"
install -d -m 0700 "$(dirname "$DONE")"
date -u +%Y-%m-%dT%H:%M:%SZ > "$DONE"
say "done"
