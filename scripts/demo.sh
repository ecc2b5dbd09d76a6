#!/usr/bin/env bash
# `make demo`: a two-member local cluster with real Sun Grid Engine, a 20-task array job that writes
# to /data, where each task ran, and the cluster removed again (always, even on failure or Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="$PWD/.venv/bin"
export PATH="$BIN:$PATH"
export SGE_ROOT=/var/lib/gridengine SGE_CELL=default
STATE="${BENCH_CLUSTER_STATE:-/var/lib/bench-cluster}"
export BENCH_CTL_CONFIG="$STATE/client.toml"
WAIT_S=240

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  step "bench-cluster down"
  bench-cluster --state-root "$STATE" down || echo "bench-cluster down reported leftovers (see above)" >&2
}
trap cleanup EXIT

step "bench-cluster up --members 2"
bench-cluster --state-root "$STATE" up --members 2

OUT="/data/project/demo-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
cat > "$OUT/task.sh" <<'EOF'
#!/bin/bash
sleep 3
echo "task $SGE_TASK_ID ran on $(hostname) at $(date +%T)" > "$OUT_DIR/task.$SGE_TASK_ID.txt"
EOF
chmod +x "$OUT/task.sh"

step "qsub -t 1-20 -l static_cores=1,static_mem=512M $OUT/task.sh"
JOB=$(qsub -terse -t 1-20 -l static_cores=1,static_mem=512M -v OUT_DIR="$OUT" -o /dev/null -j y "$OUT/task.sh")
JOB=${JOB%%.*}
echo "submitted job $JOB"
sleep 3

step "qhost -F static_cores,static_mem"
qhost -F static_cores,static_mem
step "qstat -f"
qstat -f
step "workspace-ctl cluster members"
workspace-ctl cluster members

step "waiting for job $JOB (at most ${WAIT_S} s)"
deadline=$((SECONDS + WAIT_S))
while qstat -u '*' | awk 'NR > 2 {print $1}' | grep -qx "$JOB"; do
  if ((SECONDS > deadline)); then
    echo "job $JOB did not finish within ${WAIT_S} s" >&2
    exit 1
  fi
  sleep 2
done
# accounting is flushed every second; give the last records a moment
until [ "$(qacct -j "$JOB" 2>/dev/null | grep -c '^exit_status')" -ge 20 ] || ((SECONDS > deadline)); do sleep 1; done

step "where each task ran (qacct -j $JOB)"
qacct -j "$JOB" | awk '/^hostname/ {h = $2} /^taskid/ {t = $2} /^exit_status/ {print t, h, "exit " $2}' \
  | sort -n | awk '{printf "task %-3s %-10s %s %s\n", $1, $2, $3, $4}'
echo
qacct -j "$JOB" | awk '/^hostname/ {n[$2]++} END {for (h in n) printf "%s ran %d tasks\n", h, n[h]}' | sort
echo "$(ls "$OUT"/task.*.txt | wc -l) output files in $OUT"
