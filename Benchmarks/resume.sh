#!/usr/bin/env bash
# Snapshot resume, end to end: `stack-emulator start` (release build; launch → fresh
# secrets rotated in the guest → the four services answering 200, process start and
# exit included) against a bare Python QMP/QGA driver doing the same steps on the same
# snapshot (Benchmarks/resume-baseline.py, modelled on the lab driver), in the same run,
# alternating so background load hits both alike. Prints each run, the medians and the
# ratio ours/baseline (target < 1.0), plus our per-phase medians.
#
#   Benchmarks/resume.sh [RUNS]      default 7 (median of at least 5 is required)
#
# Uses the demo guest (guest/build-demo-guest) in .build-bench (its own STACK_EMULATOR_HOME),
# capturing a snapshot first when there is none. Ports: EMULATOR_*_PORT or 26710-26713.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-7}
[ "$RUNS" -ge 5 ] || { echo "RUNS must be at least 5" >&2; exit 1; }
repo=$PWD
export PATH="$PATH:/opt/swift/usr/bin"

swift build -c release --product stack-emulator >/dev/null
emulator=$(swift build -c release --show-bin-path)/stack-emulator
guest=$(guest/build-demo-guest 2>/dev/null | tail -n 1)

export STACK_EMULATOR_HOME=$repo/.build-bench
images=$STACK_EMULATOR_HOME/images
mkdir -p "$images" "$STACK_EMULATOR_HOME/share"
for pair in qcow2:base.qcow2 kernel:vmlinux initrd:initrd.img cmdline:cmdline; do
  ln -sfn "$guest/${pair#*:}" "$images/stack-emulator-amd64.${pair%%:*}"
done
printf 'STACK_DEMO=1\n' > "$images/base.env"
export EMULATOR_RAM=256 EMULATOR_CPUS=1 EMULATOR_SNAPSHOT_RAM=256 EMULATOR_SNAPSHOT_CPUS=1 EMULATOR_ACCEL=tcg
export EMULATOR_HOST_SHARE=$STACK_EMULATOR_HOME/share
export EMULATOR_DASHBOARD_PORT=${EMULATOR_DASHBOARD_PORT:-26710} EMULATOR_BACKEND_PORT=${EMULATOR_BACKEND_PORT:-26711}
export EMULATOR_MINIO_PORT=${EMULATOR_MINIO_PORT:-26712} EMULATOR_INBUCKET_PORT=${EMULATOR_INBUCKET_PORT:-26713}
ports=$(printf '{"dashboard":%s,"backend":%s,"minio":%s,"inbucket":%s}' "$EMULATOR_DASHBOARD_PORT" \
        "$EMULATOR_BACKEND_PORT" "$EMULATOR_MINIO_PORT" "$EMULATOR_INBUCKET_PORT")
vm=$STACK_EMULATOR_HOME/run/vm
work=$(mktemp -d "${TMPDIR:-/tmp}/resume-bench-XXXXXX")

# Ends whatever VM runs in the bench home (untimed; a SIGTERM is enough between runs).
kill_vm() {
  local pid
  pid=$(cat "$vm/qemu.pid" 2>/dev/null) || return 0
  if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-pidfile $vm/qemu.pid"; then
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
  fi
  rm -f "$vm/qemu.pid" "$vm/monitor.sock" "$vm/qga.sock"
}
trap 'kill_vm; rm -rf "$work"' EXIT

kill_vm
"$emulator" capture >/dev/null
snapshot=$(readlink -f "$images/snapshots/stack-emulator-amd64/current")

ms() { date +%s%3N; }
ours=(); base=(); phases=()
for i in $(seq 1 "$RUNS"); do
  kill_vm
  t=$(ms)
  "$emulator" bench --json > "$work/bench.json" 2>/dev/null
  ours+=($(( $(ms) - t )))
  phases+=("$(cat "$work/bench.json")")
  # The argv of the QEMU stack-emulator launched: the baseline launches the same.
  pid=$(cat "$vm/qemu.pid")
  python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1],"rb").read().split(b"\0")[:-1], default=lambda b: b.decode()))' \
    "/proc/$pid/cmdline" > "$work/argv.json"
  kill_vm
  t=$(ms)
  python3 Benchmarks/resume-baseline.py resume --argv "$work/argv.json" --vm-dir "$vm" --snapshot "$snapshot" \
    --base-image "$images/stack-emulator-amd64.qcow2" --share "$EMULATOR_HOST_SHARE" --ports "$ports" > /dev/null
  base+=($(( $(ms) - t )))
  printf 'run %d: stack-emulator start %5d ms   baseline %5d ms\n' "$i" "${ours[-1]}" "${base[-1]}"
done
kill_vm

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
m_ours=$(median "${ours[@]}")
m_base=$(median "${base[@]}")
echo
echo "median of $RUNS: stack-emulator start ${m_ours} ms, bare Python driver ${m_base} ms"
awk -v a="$m_ours" -v b="$m_base" 'BEGIN { printf "ratio ours/baseline: %.2f (target < 1.0)\n", a / b }'
echo
echo "stack-emulator phase medians (ms; phases overlap):"
printf '%s\n' "${phases[@]}" | python3 -c '
import json, statistics, sys
runs = [json.loads(line) for line in sys.stdin if line.strip()]
order = []
for run in runs:
    for p in run["phases"]:
        if p["phase"] not in order: order.append(p["phase"])
for name in order:
    values = [p["seconds"] for run in runs for p in run["phases"] if p["phase"] == name]
    print(f"  {name:10s} {statistics.median(values) * 1000:7.1f}")
total = statistics.median(r["total_seconds"] for r in runs) * 1000
label = "total"
print(f"  {label:10s} {total:7.1f}   (inside the process)")
'
