#!/bin/sh
# Streaming zstd (module Zstd, driven by Benchmarks/zstd-bench) against the zstd CLI
# the shell scripts used (`zstd -1 -T0`), in the same run, on a RAM-like image
# (65% zero pages, 20% random, 15% repetitive, in 64 KiB runs; §4.16 step 11, §5.4 #25).
# For each case: best-of-N wall time and CPU time (user+sys of all processes),
# ours and CLI, and the ratios ours/CLI (target: <= 1.0). Runs alternate between
# ours and the CLI so background load hits both alike.
#
#   Benchmarks/zstd.sh [MIB] [RUNS]      defaults: 256 MiB, 5 runs
set -eu
cd "$(dirname "$0")/.."
MIB=${1:-256}
RUNS=${2:-5}

command -v zstd >/dev/null || { echo "zstd CLI not found (apt-get install zstd)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "GNU time not found (apt-get install time)" >&2; exit 1; }
swift build -c release --product zstd-bench >/dev/null
BENCH=$(swift build -c release --show-bin-path)/zstd-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/zstd-bench-XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
"$BENCH" generate "$WORK/ram.img" "$MIB"
"$BENCH" compress "$WORK/ram.img" "$WORK/ours.zst"
zstd -q -1 -T0 -f "$WORK/ram.img" -o "$WORK/cli.zst"
cat "$WORK/ram.img" "$WORK/ours.zst" "$WORK/cli.zst" > /dev/null   # warm the page cache

# measure CMD: prints "WALL_MS CPU_MS" for one run (the output file is removed first,
# so every run creates its file as capture and resume do).
measure() {
    rm -f "$WORK/out"
    /usr/bin/time -f "%e %U %S" -o "$WORK/time" sh -c "$1"
    awk '{ printf "%d %d\n", $1 * 1000, ($2 + $3) * 1000 }' "$WORK/time"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) b = 1; printf "%.2f", a / b }'; }

row() {  # row LABEL OURS_CMD CLI_CMD
    ours_wall=""; ours_cpu=""; cli_wall=""; cli_cpu=""
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        set -- "$1" "$2" "$3" $(measure "$2") $(measure "$3")
        [ -z "$ours_wall" ] || [ "$4" -lt "$ours_wall" ] && ours_wall=$4
        [ -z "$ours_cpu" ] || [ "$5" -lt "$ours_cpu" ] && ours_cpu=$5
        [ -z "$cli_wall" ] || [ "$6" -lt "$cli_wall" ] && cli_wall=$6
        [ -z "$cli_cpu" ] || [ "$7" -lt "$cli_cpu" ] && cli_cpu=$7
        set -- "$1" "$2" "$3"
        i=$((i + 1))
    done
    printf '%-34s wall ours %5d ms cli %5d ms  ratio %sx | cpu ours %5d ms cli %5d ms  ratio %sx\n' "$1" \
        "$ours_wall" "$cli_wall" "$(ratio "$ours_wall" "$cli_wall")" "$ours_cpu" "$cli_cpu" "$(ratio "$ours_cpu" "$cli_cpu")"
}

echo "zstd benchmark: ${MIB} MiB RAM-like image, best of ${RUNS}, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $(zstd --version | sed 's/.*v\([0-9.]*\).*/zstd \1/')"
row "compress file -> file"            "'$BENCH' compress '$WORK/ram.img' '$WORK/out'" \
                                       "zstd -q -1 -T0 -f '$WORK/ram.img' -o '$WORK/out'"
row "compress pipe -> file (capture)"  "cat '$WORK/ram.img' | '$BENCH' compress - '$WORK/out'" \
                                       "cat '$WORK/ram.img' | zstd -q -1 -T0 -c > '$WORK/out'"
row "decompress -> file, dense"        "'$BENCH' decompress '$WORK/ours.zst' '$WORK/out'" \
                                       "zstd -q -d --no-sparse -f '$WORK/ours.zst' -o '$WORK/out'"
row "decompress -> file, sparse"       "'$BENCH' decompress '$WORK/ours.zst' '$WORK/out' --sparse" \
                                       "zstd -q -d --sparse -f '$WORK/ours.zst' -o '$WORK/out'"
row "decompress -> pipe (resume)"      "'$BENCH' decompress '$WORK/ours.zst' - | cat > /dev/null" \
                                       "zstd -q -d -c '$WORK/ours.zst' | cat > /dev/null"

ours_size=$(stat -c %s "$WORK/ours.zst")
cli_size=$(stat -c %s "$WORK/cli.zst")
printf '%-34s ours %d B  cli %d B  ratio %sx  (%s of the input)\n' "compressed size" "$ours_size" "$cli_size" \
    "$(awk -v a="$ours_size" -v b="$cli_size" 'BEGIN { printf "%.4f", a / b }')" \
    "$(awk -v a="$ours_size" -v b="$((MIB * 1048576))" 'BEGIN { printf "%.1f%%", 100 * a / b }')"

"$BENCH" decompress "$WORK/ours.zst" "$WORK/dense"
"$BENCH" decompress "$WORK/ours.zst" "$WORK/sparse" --sparse
zstd -q -d "$WORK/cli.zst" -o "$WORK/cli-sparse"
cmp "$WORK/dense" "$WORK/ram.img" && cmp "$WORK/sparse" "$WORK/ram.img" && cmp "$WORK/cli-sparse" "$WORK/ram.img"
printf '%-34s ours sparse %d KiB  ours dense %d KiB  cli sparse %d KiB  (of %d KiB)\n' "allocated after decompress" \
    "$(du -k "$WORK/sparse" | cut -f1)" "$(du -k "$WORK/dense" | cut -f1)" "$(du -k "$WORK/cli-sparse" | cut -f1)" "$((MIB * 1024))"
