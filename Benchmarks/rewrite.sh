#!/usr/bin/env bash
# Benchmarks the tree copier and the one-pass rewriter against same-run baselines:
#   prepare (copy + sentinel rewrite of apps/)  vs  cp -a               (target ≤ 1.0×)
#   prepare                                     vs  grep -rlF SENTINEL  (for scale)
#   literal key rotation of apps/               vs  grep -rlF <PCK>     (target ≤ 1.2×)
#   peak RSS of our runs                                                (target ≤ 64 MB)
# plus the restart case (copying over the previous start's copy). Warm page cache
# (everything runs once before timing), fresh destinations per run, median of RUNS.
# Wall time is what matters; CPU time (user+sys) is printed too because on a shared
# machine wall time also measures the neighbours.
# On ext4 without a journal, inode allocation skips inodes freed in the last 1–5 min,
# probing each one (find_inode_bit → recently_deleted): after mass deletions that
# dominates any copy (cp -a included). So nothing is deleted between timed runs on disk
# file systems (copies are removed at the end), and back-to-back invocations of this
# script measure each other's clean-up. tmpfs (BENCH_DIR=/dev/shm/…) has no such effect.
# Environment: RUNS (5), BENCH_DIR (/tmp/stack-rewrite-bench; /dev/shm/… for tmpfs),
# FILES (24000), MEGABYTES (600), WORKERS (default: one per CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib.sh

RUNS=${RUNS:-5}
WORK=${BENCH_DIR:-/tmp/stack-rewrite-bench}
FILES=${FILES:-24000}
MEGABYTES=${MEGABYTES:-600}
EXTRA=()
[ -n "${WORKERS:-}" ] && EXTRA+=(--workers "$WORKERS")
PCK=00000000000000000000000000000000ffffffffffffffffffffffffffffffff
NEW=5b2f0e5a4c1d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f
require_time

swift build -c release --product rewrite-bench >/dev/null
BENCH="$(swift build -c release --show-bin-path)/rewrite-bench"
TREE=$WORK/app
RUNSDIR=$WORK/runs
STAMP="files=$FILES megabytes=$MEGABYTES"
if [ "$(cat "$WORK/stamp" 2>/dev/null)" != "$STAMP" ]; then
    rm -rf "$WORK"
    mkdir -p "$WORK"
    "$BENCH" generate "$TREE" --files "$FILES" --megabytes "$MEGABYTES"
    echo "$STAMP" > "$WORK/stamp"
fi
rm -rf "$RUNSDIR" "$WORK"/t.* "$WORK"/c.* "$WORK"/m.*
mkdir -p "$RUNSDIR"
trap 'rm -rf "$RUNSDIR"' EXIT

echo "tree: $TREE ($(find "$TREE" -type f | wc -l) files, $(du -sm "$TREE" | cut -f1) MB, $(find "$TREE" -type l | wc -l) symlinks)"
echo "file system: $(stat -f -c %T "$WORK"); $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg); runs: $RUNS; rewrite-bench ${EXTRA[*]:-}"

# Warm-up: the whole tree in the page cache, every command once.
find "$TREE" -type f -exec cat {} + >/dev/null
cp -a "$TREE" "$RUNSDIR/warm-cp"
"$BENCH" prepare "$TREE" "$RUNSDIR/warm-prep" "${EXTRA[@]}" >/dev/null
grep -rlF STACK_ENV_VAR_SENTINEL "$TREE" >/dev/null
grep -rlF "$PCK" "$RUNSDIR/warm-prep/apps" >/dev/null

# Correctness of the prepared tree (untimed): outside apps/ identical to cp -a
# (content, modes, symlinks); inside, only tokens of unset/empty variables remain.
diff -r --no-dereference "$RUNSDIR/warm-cp/node_modules" "$RUNSDIR/warm-prep/node_modules" >/dev/null \
    || { echo "FAIL: node_modules differs from cp -a" >&2; exit 1; }
[ "$(cd "$RUNSDIR/warm-cp" && find . -printf '%y %m %p %l\n' | sort | md5sum)" = "$(cd "$RUNSDIR/warm-prep" && find . -printf '%y %m %p %l\n' | sort | md5sum)" ] \
    || { echo "FAIL: types/modes/links differ from cp -a" >&2; exit 1; }
echo "tokens left in prepared apps/: $(grep -rhoE 'STACK_ENV_VAR_SENTINEL[A-Z_]*' "$RUNSDIR/warm-prep/apps" | sort -u | tr '\n' ' ')"

for run in $(seq "$RUNS"); do
    timed cp_a cp -a "$TREE" "$RUNSDIR/cp.$run"
    timed prepare "$BENCH" prepare "$TREE" "$RUNSDIR/prep.$run" "${EXTRA[@]}"
    timed grep_sentinel grep -rlF STACK_ENV_VAR_SENTINEL "$TREE"
    # Restart: the destination holds the previous start's copy.
    timed cp_a_restart cp -a "$TREE/." "$RUNSDIR/cp.$run"
    timed prepare_restart "$BENCH" prepare "$TREE" "$RUNSDIR/prep.$run" "${EXTRA[@]}"
    # Rotation of the freshly prepared copy: placeholder → new key.
    timed grep_key grep -rlF "$PCK" "$RUNSDIR/prep.$run/apps"
    timed literal "$BENCH" literal "$RUNSDIR/prep.$run/apps" "$PCK" "$NEW" "${EXTRA[@]}"
    if grep -rqF "$PCK" "$RUNSDIR/prep.$run/apps"; then echo "FAIL: placeholder still present after rotation" >&2; exit 1; fi
    # tmpfs frees inodes without after-effects: keep memory use to one run's copies.
    if [ "$(stat -f -c %T "$WORK")" = tmpfs ]; then rm -rf "$RUNSDIR/cp.$run" "$RUNSDIR/prep.$run"; fi
done
echo "last prepare: $(grep -ho 'rewrite: .*elapsed' "$WORK/out.prepare" | cut -c1-110)"
echo "last rotation: $(grep -ho 'scanned=.*replaced=[0-9]*' "$WORK/out.literal")"

printf '\n%-34s %10s %10s %12s\n' "median of $RUNS runs" "wall s" "cpu s" "peak RSS KB"
for label in cp_a prepare grep_sentinel cp_a_restart prepare_restart grep_key literal; do
    printf '%-34s %10.3f %10.3f %12s\n' "$label" "$(median "t.$label")" "$(median "c.$label")" "$(sort -n "$WORK/m.$label" | tail -1)"
done
echo
echo "prepare / cp -a                     wall $(ratio t.prepare t.cp_a)  cpu $(ratio c.prepare c.cp_a)   (target ≤ 1.0×)"
echo "prepare / cp -a, restart            wall $(ratio t.prepare_restart t.cp_a_restart)  cpu $(ratio c.prepare_restart c.cp_a_restart)"
echo "prepare / grep -rlF sentinel        wall $(ratio t.prepare t.grep_sentinel)  cpu $(ratio c.prepare c.grep_sentinel)"
echo "literal rotation / grep -rlF PCK    wall $(ratio t.literal t.grep_key)  cpu $(ratio c.literal c.grep_key)   (target ≤ 1.2×)"
echo "peak RSS prepare / literal          $(sort -n "$WORK/m.prepare" | tail -1) KB / $(sort -n "$WORK/m.literal" | tail -1) KB   (target ≤ 65536 KB)"
