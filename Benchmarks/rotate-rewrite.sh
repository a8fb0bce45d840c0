#!/usr/bin/env bash
# The key-rewrite step of `rotate-secrets` against one `grep -rlF KEY` pass over the
# same tree, in the same run, page cache warm (target: rewrite ≤ 1.2 × grep).
#
#   Benchmarks/rotate-rewrite.sh [ROUNDS] [FILES] [MEGABYTES]
#
# The tree is the entrypoint benchmark's (`rewrite-bench generate`: a Next.js standalone
# build shape, ~1 % of the files under apps/ hold the placeholder PCK). Each round first
# times `grep -rlF <current key> <tree>/apps`, then runs rotate-secrets (no database, no
# restart) from the current key to a fresh one and takes the `rewrite` step's time from
# its `--timings` line — so both scan the same bytes for the same key and find the same
# files; the rewrite also writes those files (atomically). The `sync` step that follows
# (one syncfs, for power-loss durability) is reported beside it.
# Prints medians, the ratio, and the whole rotate-secrets process time.
set -euo pipefail
rounds=${1:-15}
files=${2:-24000}
megabytes=${3:-600}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

echo "building rotate-secrets and rewrite-bench (release)..." >&2
swift build -c release --product rotate-secrets >&2
swift build -c release --product rewrite-bench >&2
bindir="$(swift build -c release --show-bin-path)"

work=$(mktemp -d /tmp/rotrw.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "generating $files files, $megabytes MB..." >&2
"$bindir/rewrite-bench" generate "$work/tree" --files "$files" --megabytes "$megabytes" >&2
mkdir -m 700 "$work/state"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now_ms() { date +%s%N | awk '{printf "%.3f", $1/1e6}'; }
current=00000000000000000000000000000000ffffffffffffffffffffffffffffffff
holding=$(grep -rlF "$current" "$work/tree/apps" | wc -l)   # also warms the page cache
total=$(find "$work/tree/apps" -type f | wc -l)
echo "tree: $total files under apps/, $holding hold the placeholder PCK" >&2

: >"$work/grep"; : >"$work/grepcpu"; : >"$work/rewrite"; : >"$work/rewritecpu"; : >"$work/sync"; : >"$work/whole"
for _ in $(seq 1 "$rounds"); do
    start=$(now_ms)
    found=$(/usr/bin/time -f '%U %S' -o "$work/time" grep -rlF "$current" "$work/tree/apps" | wc -l)
    end=$(now_ms)
    awk '{print ($1 + $2) * 1000}' "$work/time" >>"$work/grepcpu"
    awk -v a="$start" -v b="$end" 'BEGIN{print b-a}' >>"$work/grep"
    [ "$found" = "$holding" ] || { echo "grep found $found files, expected $holding" >&2; exit 1; }

    next=$(openssl rand -hex 32)
    k2=$(openssl rand -hex 32); k3=$(openssl rand -hex 32); k4=$(openssl rand -hex 32)
    start=$(now_ms)
    (
        export STACK_SEED_INTERNAL_PROJECT_PUBLISHABLE_CLIENT_KEY="$next" STACK_SEED_INTERNAL_PROJECT_SECRET_SERVER_KEY="$k2" \
            STACK_SEED_INTERNAL_PROJECT_SUPER_SECRET_ADMIN_KEY="$k3" CRON_SECRET="$k4"
        unset STACK_DATABASE_CONNECTION_STRING
        exec "$bindir/rotate-secrets" --timings --no-restart --work-dir "$work/tree" \
            --env-file-path "$work/state/rotated-secrets.env" >"$work/run.log"
    )
    end=$(now_ms)
    awk -v a="$start" -v b="$end" 'BEGIN{print b-a}' >>"$work/whole"
    grep -q "patched $holding file(s)" "$work/run.log" || { echo "rotation did not patch $holding files:" >&2; cat "$work/run.log" >&2; exit 1; }
    grep -o 'elapsed=[0-9.]* ms step=rewrite' "$work/run.log" | sed 's/elapsed=\([0-9.]*\) ms.*/\1/' >>"$work/rewrite"
    grep -o 'cpu=[0-9.]* ms elapsed=[0-9.]* ms step=rewrite' "$work/run.log" | sed 's/cpu=\([0-9.]*\) ms.*/\1/' >>"$work/rewritecpu"
    grep -o 'elapsed=[0-9.]* ms step=sync' "$work/run.log" | sed 's/elapsed=\([0-9.]*\) ms.*/\1/' >>"$work/sync"
    current=$next
done

g=$(median <"$work/grep"); r=$(median <"$work/rewrite"); y=$(median <"$work/sync"); w=$(median <"$work/whole")
gc=$(median <"$work/grepcpu"); rc=$(median <"$work/rewritecpu")
echo "key rewrite vs grep -rlF over $total files ($holding hold the key), $rounds rounds, medians:"
printf '  grep -rlF KEY apps/        %8.1f ms   cpu %8.1f ms\n' "$g" "$gc"
printf '  rotate-secrets rewrite     %8.1f ms   cpu %8.1f ms\n' "$r" "$rc"
printf '  rotate-secrets sync step   %8.1f ms   (syncfs: flushes whatever is dirty on that file system)\n' "$y"
printf '  rotate-secrets whole run   %8.1f ms\n' "$w"
awk -v g="$g" -v r="$r" -v y="$y" -v gc="$gc" -v rc="$rc" 'BEGIN {
    printf "ratio rewrite/grep: wall %.2f (target <= 1.2)   cpu %.2f   (rewrite+sync)/grep wall %.2f\n", r/g, rc/gc, (r+y)/g }'
