#!/usr/bin/env bash
# SIGTERM → exit of the real `stack-entrypoint` (release build) running two idle Node
# servers, against the same-run baselines of sigterm-exit.sh (a bare Node server, and two
# killed together). Target: median ≤ 100 ms over the runs (default 20).
#
#   Benchmarks/entrypoint-sigterm.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
swift build -c release --product stack-entrypoint >&2
bin=$(swift build -c release --show-bin-path)
app=$(mktemp -d /tmp/entrypoint-sigterm.XXXXXX)
trap 'rm -rf "$app"' EXIT
for name in backend dashboard; do
    mkdir -p "$app/apps/$name"
    # Idle HTTP server; its stdout is the entrypoint's, where the benchmark waits for it.
    echo "require('http').createServer().listen(0, () => console.log('$name:listening'));" > "$app/apps/$name/server.js"
done
export STACK_SKIP_MIGRATIONS=true STACK_SKIP_SEED_SCRIPT=true
SUPERVISOR="'$bin/stack-entrypoint' --app-dir '$app' --work-dir '$app' --rotated-secrets '$app/none.env' --grace-period 10" \
READY_LINES=2 exec Benchmarks/sigterm-exit.sh "$runs"
