#!/usr/bin/env bash
# SIGTERM -> exit latency of a supervisor running two idle Node HTTP servers, against the
# baselines of one bare Node server killed the same way and of two bare servers killed
# together (the floor for anything that must wait for both), same run, interleaved.
#
#   Benchmarks/sigterm-exit.sh [runs]          (default 20; target: median <= 100 ms)
#
# The supervised command defaults to the test harness (built with `swift build -c $CONFIG`,
# CONFIG=release by default). To measure another supervisor (stack-entrypoint), set
# SUPERVISOR to a shell command line that starts it; `{server}` in it is replaced by the
# path of a server script that prints "<name>:listening" once it listens, and the
# supervisor's stdout must carry those lines (READY_LINES of them, default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-20}
config=${CONFIG:-release}
ready_lines=${READY_LINES:-2}
work=$(mktemp -d /tmp/sigterm-exit.XXXXXX)
trap 'rm -rf "$work"' EXIT

server="$work/server.js"
cat > "$server" <<'JS'
require("http").createServer().listen(0, () => console.log((process.argv[2] || "server") + ":listening"));
JS

if [ -z "${SUPERVISOR:-}" ]; then
    swift build -c "$config" --product supervisor-harness >&2
    harness="$(swift build -c "$config" --show-bin-path)/supervisor-harness"
    SUPERVISOR="'$harness' supervise --grace-ms 10000 --child 'backend=exec node {server} backend' --child 'dashboard=exec node {server} dashboard'"
fi
supervisor=${SUPERVISOR//\{server\}/$server}

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

# measure READY COMMAND...: starts COMMAND, waits for READY "listening" lines on its
# stdout, sends SIGTERM, prints the microseconds until it has exited.
measure() {
    local ready=$1; shift
    local fifo="$work/out.$RANDOM"
    mkfifo "$fifo"
    "$@" >"$fifo" 2>/dev/null &
    local pid=$!
    exec 3<"$fifo"
    local seen=0 line
    while [ "$seen" -lt "$ready" ] && read -r -u 3 line; do
        case $line in *:listening) seen=$((seen + 1)) ;; esac
    done
    if [ "$seen" -lt "$ready" ]; then
        echo "never became ready: $*" >&2
        kill -KILL "$pid" 2>/dev/null || true
        exit 1
    fi
    # Keep draining so a chatty exit cannot block on a full pipe.
    cat <&3 >/dev/null &
    local drain=$!
    local t0 t1
    t0=$(now_us)
    kill -TERM "$pid"
    wait "$pid" || true
    t1=$(now_us)
    wait "$drain" 2>/dev/null || true
    exec 3<&-
    rm -f "$fifo"
    echo $((t1 - t0))
}

# Two bare servers started together, both ready, SIGTERM to both, until both have exited.
measure_pair() {
    local fifo="$work/pair.$RANDOM"
    mkfifo "$fifo"
    node "$server" one >"$fifo" 2>/dev/null &
    local one=$!
    node "$server" two >"$fifo" 2>/dev/null &
    local two=$!
    exec 4<"$fifo"
    local seen=0 line
    while [ "$seen" -lt 2 ] && read -r -u 4 line; do
        case $line in *:listening) seen=$((seen + 1)) ;; esac
    done
    local t0 t1
    t0=$(now_us)
    kill -TERM "$one" "$two"
    wait "$one" "$two" || true
    t1=$(now_us)
    exec 4<&-
    rm -f "$fifo"
    echo $((t1 - t0))
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

supervised=()
bare=()
pair=()
for ((i = 0; i < runs; i++)); do
    supervised+=("$(measure "$ready_lines" bash -c "exec $supervisor")")
    bare+=("$(measure 1 node "$server" bare)")
    pair+=("$(measure_pair)")
done

supervised_median=$(printf '%s\n' "${supervised[@]}" | median)
bare_median=$(printf '%s\n' "${bare[@]}" | median)
pair_median=$(printf '%s\n' "${pair[@]}" | median)
awk -v s="$supervised_median" -v b="$bare_median" -v p="$pair_median" -v n="$runs" 'BEGIN {
    printf "sigterm-exit: supervisor + 2 node servers median %.1f ms (target <= 100 ms) over %d runs\n", s / 1000, n
    printf "sigterm-exit: bare node server median %.1f ms; two bare servers together %.1f ms\n", b / 1000, p / 1000
    printf "sigterm-exit: ratio supervised/bare %.2f, supervised/two-bare %.2f\n", s / b, s / p
    exit (s / 1000 <= 100) ? 0 : 1
}'
