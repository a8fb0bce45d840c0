#!/usr/bin/env bash
# The real `stack-entrypoint prepare` (release build) against same-run baselines, on the
# generated Next.js-standalone-like tree (Benchmarks/README.md, `rewrite-bench generate`):
#   prepare (copy /app → WORK_DIR + sentinel substitution)  vs  cp -a          (target ≤ 1.0×)
#   prepare                                                 vs  grep -rlF once (for scale)
#   peak RSS of prepare                                                        (target ≤ 64 MB)
# Warm page cache, a fresh WORK_DIR per run, median of RUNS. Migrations and the seed are
# skipped (STACK_SKIP_*): this measures the entrypoint's own work.
# Environment: RUNS (5), BENCH_DIR (/tmp/stack-prepare-bench; /dev/shm/… for tmpfs),
# FILES (24000), MEGABYTES (600).
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh
require_time

RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-/tmp/stack-prepare-bench}
FILES=${FILES:-24000}
MEGABYTES=${MEGABYTES:-600}

swift build -c release --product stack-entrypoint >/dev/null
swift build -c release --product rewrite-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
TREE=$WORK/app
RUNSDIR=$WORK/runs
STAMP="files=$FILES megabytes=$MEGABYTES"
if [ "$(cat "$WORK/stamp" 2>/dev/null)" != "$STAMP" ]; then
    rm -rf "$WORK"
    mkdir -p "$WORK"
    "$bin/rewrite-bench" generate "$TREE" --files "$FILES" --megabytes "$MEGABYTES"
    echo "$STAMP" > "$WORK/stamp"
fi
rm -rf "$RUNSDIR" "$WORK"/t.* "$WORK"/c.* "$WORK"/m.*
mkdir -p "$RUNSDIR"
trap 'rm -rf "$RUNSDIR"' EXIT

# The container environment of a self-host start: every sentinel the generator writes has
# a value except one, which must stay verbatim.
export STACK_SKIP_MIGRATIONS=true STACK_SKIP_SEED_SCRIPT=true
export NEXT_PUBLIC_STACK_API_URL=https://api.example.test NEXT_PUBLIC_STACK_DASHBOARD_URL=https://app.example.test
export STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY=pck STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY=ssk
export STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY=sak
PREPARE=("$bin/stack-entrypoint" prepare --app-dir "$TREE" --rotated-secrets "$WORK/none.env" --work-dir)

echo "tree: $TREE ($(find "$TREE" -type f | wc -l) files, $(du -sm "$TREE" | cut -f1) MB, $(find "$TREE" -type l | wc -l) symlinks)"
echo "file system: $(stat -f -c %T "$WORK"); $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg); runs: $RUNS"

# Warm-up: the tree in the page cache, each command once; the prepared tree checked.
find "$TREE" -type f -exec cat {} + >/dev/null
cp -a "$TREE" "$RUNSDIR/warm-cp"
"${PREPARE[@]}" "$RUNSDIR/warm-prep" >/dev/null 2>&1
grep -rlF STACK_ENV_VAR_SENTINEL "$TREE" >/dev/null
[ "$(cd "$RUNSDIR/warm-cp" && find . -printf '%y %m %p %l\n' | sort | md5sum)" = \
  "$(cd "$RUNSDIR/warm-prep" && find . -not -name .stack-sentinels-replaced -printf '%y %m %p %l\n' | sort | md5sum)" ] \
    || { echo "FAIL: types/modes/links differ from cp -a" >&2; exit 1; }
echo "summary: $("${PREPARE[@]}" "$RUNSDIR/warm-prep2" 2>/dev/null)"

for run in $(seq "$RUNS"); do
    timed cp_a cp -a "$TREE" "$RUNSDIR/cp.$run"
    timed prepare "${PREPARE[@]}" "$RUNSDIR/prep.$run"
    timed grep_sentinel grep -rlF STACK_ENV_VAR_SENTINEL "$TREE"
    if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then rm -rf "$RUNSDIR/cp.$run" "$RUNSDIR/prep.$run"; fi
done

printf '\n%-28s %10s %10s %12s\n' "median of $RUNS runs" "wall s" "cpu s" "peak RSS KB"
for label in cp_a prepare grep_sentinel; do
    printf '%-28s %10.3f %10.3f %12s\n' "$label" "$(median "t.$label")" "$(median "c.$label")" "$(peak "$label")"
done
echo
echo "stack-entrypoint prepare / cp -a         wall $(ratio t.prepare t.cp_a)  cpu $(ratio c.prepare c.cp_a)   (target ≤ 1.0×)"
echo "stack-entrypoint prepare / grep -rlF     wall $(ratio t.prepare t.grep_sentinel)  cpu $(ratio c.prepare c.grep_sentinel)"
echo "peak RSS stack-entrypoint prepare        $(peak prepare) KB   (target ≤ 65536 KB)"
