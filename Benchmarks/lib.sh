# Shared by the benchmark scripts (sourced, not run). Needs $WORK (a scratch dir).
#
# timed <label> <command…>: appends wall seconds to $WORK/t.<label>, user+sys seconds to
# $WORK/c.<label> and peak RSS (KB) to $WORK/m.<label>. grep -l exiting 1 (no match) is a
# result, not a failure.
timed() {
    local label=$1; shift
    sync
    local start=$EPOCHREALTIME status=0
    /usr/bin/time -f "%M %U %S" -o "$WORK/usage" "$@" >"$WORK/out.$label" 2>&1 || status=$?
    local end=$EPOCHREALTIME
    if [ "$status" -ne 0 ] && ! { [ "$1" = grep ] && [ "$status" -eq 1 ]; }; then
        echo "FAIL: $* (exit $status)" >&2; cat "$WORK/out.$label" >&2; exit 1
    fi
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.4f\n", b - a }' >>"$WORK/t.$label"
    tail -1 "$WORK/usage" | awk '{ print $2 + $3 }' >>"$WORK/c.$label"
    tail -1 "$WORK/usage" | awk '{ print $1 }' >>"$WORK/m.$label"
}

# median <file>: the median of the numbers in $WORK/<file>.
median() { sort -n "$WORK/$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratio <file a> <file b>: median(a) / median(b), e.g. "0.81×".
ratio() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { printf "%.2f×", a / b }'; }

# peak <label>: the largest peak RSS (KB) seen for label.
peak() { sort -n "$WORK/m.$1" | tail -1; }

require_time() { [ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }; }
