#!/usr/bin/env bash
# QMP client benchmark against a same-run baseline (a bare Python driver doing the
# same steps the way the lab driver does: one blocking socket, no threads).
#
#   Benchmarks/qmp-roundtrip.sh [COUNT] [ROUNDS]
#
# 1. Latency of COUNT sequential `query-status` round trips on one connection to a
#    `qemu-system-x86_64 -machine none`, Swift QMPClient vs Python, alternating 7 times
#    on the same QEMU (a shared 2-core machine is noisy); prints the median of the
#    per-run medians and the ratio swift/python (< 1: faster).
# 2. Capture -> resume round trip of a `-machine none` QEMU through fd: migration
#    (getfd + migrate, then getfd + migrate-incoming into a `-S -incoming defer` QEMU,
#    completion from MIGRATION events, cont, query-status running): ROUNDS fresh QEMU
#    pairs per driver; QEMU launch time excluded; prints medians and the ratio.
set -euo pipefail
count=${1:-1000}
rounds=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

echo "building qmp-roundtrip (release)..." >&2
swift build -c release --product qmp-roundtrip >&2
bin="$(swift build -c release --show-bin-path)/qmp-roundtrip"
baseline="$root/Benchmarks/qmp-roundtrip-baseline.py"

work=$(mktemp -d /tmp/qmpb.XXXXXX)
pids=()
stop_all() {
    # (a subshell's "Killed" notices would clutter the output)
    for pid in "${pids[@]}"; do { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true; done
    pids=()
}
cleanup() {
    stop_all
    rm -rf "$work"
}
trap cleanup EXIT

# start_qemu SOCKET [extra args...]: starts QEMU in the background, waits for its socket.
start_qemu() {
    local sock=$1; shift
    rm -f "$sock"
    qemu-system-x86_64 -machine none -nodefaults -display none \
        -qmp "unix:$sock,server=on,wait=off" "$@" >>"$work/qemu.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 500); do [ -S "$sock" ] && return 0; sleep 0.01; done
    echo "QEMU did not create $sock" >&2; cat "$work/qemu.log" >&2; exit 1
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# 1. latency
start_qemu "$work/lat.sock"
: >"$work/py.lat"; : >"$work/sw.lat"
for _ in 1 2 3 4 5 6 7; do
    python3 "$baseline" latency "$work/lat.sock" "$count" >>"$work/py.lat"
    "$bin" latency "$work/lat.sock" "$count" >>"$work/sw.lat"
done
stop_all
py_med=$(cut -d' ' -f1 "$work/py.lat" | median)
sw_med=$(cut -d' ' -f1 "$work/sw.lat" | median)
py_p90=$(cut -d' ' -f2 "$work/py.lat" | median)
sw_p90=$(cut -d' ' -f2 "$work/sw.lat" | median)
printf 'query-status round trip (%d calls x 7 runs): swift median %.1f us (p90 %.1f), python baseline median %.1f us (p90 %.1f), ratio swift/python %.2f\n' \
    "$count" "$sw_med" "$sw_p90" "$py_med" "$py_p90" "$(awk -v a="$sw_med" -v b="$py_med" 'BEGIN {print a/b}')"

# 2. capture -> resume round trip
: >"$work/py.mig"; : >"$work/sw.mig"
for _ in $(seq 1 "$rounds"); do
    for driver in py sw; do
        start_qemu "$work/src.sock"
        start_qemu "$work/dst.sock" -S -incoming defer
        if [ "$driver" = py ]; then
            python3 "$baseline" migrate "$work/src.sock" "$work/dst.sock" "$work/snap.mig" >>"$work/py.mig"
        else
            "$bin" migrate "$work/src.sock" "$work/dst.sock" "$work/snap.mig" >>"$work/sw.mig"
        fi
        stop_all
    done
done
for driver in py sw; do
    awk '{print $1 + $2}' "$work/$driver.mig" >"$work/$driver.total"
done
sw_cap=$(cut -d' ' -f1 "$work/sw.mig" | median); sw_res=$(cut -d' ' -f2 "$work/sw.mig" | median)
py_cap=$(cut -d' ' -f1 "$work/py.mig" | median); py_res=$(cut -d' ' -f2 "$work/py.mig" | median)
sw_tot=$(median <"$work/sw.total"); py_tot=$(median <"$work/py.total")
printf 'capture->resume round trip (-machine none, fd:, %d rounds, launch excluded): swift median %.2f ms (capture %.2f + resume %.2f), python baseline median %.2f ms (capture %.2f + resume %.2f), ratio swift/python %.2f\n' \
    "$rounds" "$sw_tot" "$sw_cap" "$sw_res" "$py_tot" "$py_cap" "$py_res" "$(awk -v a="$sw_tot" -v b="$py_tot" 'BEGIN {print a/b}')"
