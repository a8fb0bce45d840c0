#!/usr/bin/env bash
# Snapshot capture, end to end: `EMULATOR_FORCE_CAPTURE=1 stack-emulator capture`
# (release; cold boot in the snapshot layout → services healthy → agent answering →
# stop → RAM state through a pipe into in-process zstd → quit → commit) against the
# bare Python driver doing the same with `migrate exec:zstd -1 -T0 > file`
# (Benchmarks/resume-baseline.py capture), alternating, in the same run. Prints each
# run, the medians, the ratio ours/baseline, and our migration phase alone.
#
#   Benchmarks/capture.sh [RUNS]      default 3
#
# Uses the demo guest in .build-bench (see Benchmarks/resume.sh), ports 26710-26713
# unless EMULATOR_*_PORT say otherwise. A cold boot dominates: ~5 s under TCG.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
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
work=$(mktemp -d "${TMPDIR:-/tmp}/capture-bench-XXXXXX")

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

# One resume gives the snapshot-layout argv the baseline boots (minus -incoming).
kill_vm
"$emulator" capture >/dev/null
"$emulator" start >/dev/null
python3 -c 'import json,sys; print(json.dumps([a.decode() for a in open(sys.argv[1],"rb").read().split(b"\0")[:-1]]))' \
  "/proc/$(cat "$vm/qemu.pid")/cmdline" > "$work/argv.json"
kill_vm

ms() { date +%s%3N; }
ours=(); base=(); migrate=()
for i in $(seq 1 "$RUNS"); do
  t=$(ms)
  EMULATOR_FORCE_CAPTURE=1 "$emulator" capture > "$work/capture.log"
  ours+=($(( $(ms) - t )))
  migrate+=("$(sed -n 's/.*compressed, in \([0-9.]*\)s\..*/\1/p' "$work/capture.log")")
  rm -rf "$work/base" && mkdir -p "$work/base"
  t=$(ms)
  python3 Benchmarks/resume-baseline.py capture --argv "$work/argv.json" --vm-dir "$vm" --out "$work/base" \
    --base-image "$images/stack-emulator-amd64.qcow2" --kernel "$images/stack-emulator-amd64.kernel" \
    --initrd "$images/stack-emulator-amd64.initrd" --cmdline "$images/stack-emulator-amd64.cmdline" --ports "$ports" > /dev/null
  base+=($(( $(ms) - t )))
  kill_vm
  printf 'run %d: stack-emulator capture %5d ms (migration + zstd %ss)   baseline %5d ms (%s zstd bytes vs ours %s)\n' \
    "$i" "${ours[-1]}" "${migrate[-1]}" "${base[-1]}" "$(stat -c %s "$work/base/ram.zst")" \
    "$(stat -L -c %s "$images/snapshots/stack-emulator-amd64/current/ram.zst")"
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
m_ours=$(median "${ours[@]}")
m_base=$(median "${base[@]}")
echo
echo "median of $RUNS: stack-emulator capture ${m_ours} ms (migration + compression $(median "${migrate[@]}") s), bare Python driver ${m_base} ms"
awk -v a="$m_ours" -v b="$m_base" 'BEGIN { printf "ratio ours/baseline: %.2f\n", a / b }'
