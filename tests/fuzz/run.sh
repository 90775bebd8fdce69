#!/usr/bin/env bash
# Runs libFuzzer targets, each for FUZZ_SECONDS, and prints one
# "N passed, N failed" line last (each target one test), as the unit
# binaries do, so that tests/run-tests.sh adds it up.
#   run.sh DIR TARGET...     DIR holds fuzz_<target> (build-fuzz)
# Each target runs on WORK/corpus/<target>, a copy of its seeds
# (tests/fuzz/corpus/<target>) that keeps what earlier runs added, or a
# fresh copy with FUZZ_FRESH=1. Its log goes to WORK/logs/<target>.log,
# what it finds (crash-, leak-, timeout-, oom- files) to
# WORK/crashes/<target>/, printed here. WORK is FUZZ_WORK, or DIR (make
# test has its own, so as not to disturb a make fuzz under way).
# FUZZ_JOBS targets run at once (default 1); FUZZ_ARGS adds libFuzzer
# flags.
set -uo pipefail
cd "$(dirname "$0")/../.."

dir=$1
shift
work=${FUZZ_WORK:-$dir}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
passed=0
failed=0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
if [[ -x /usr/bin/llvm-symbolizer-14 ]]; then
    export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
fi

mkdir -p "$work/logs"

start() {  # run one target in the background; its PID in pids[target]
    local t=$1 corpus=$work/corpus/$1 crashes=$work/crashes/$1
    if [[ ${FUZZ_FRESH:-0} == 1 ]]; then
        rm -rf "$corpus"
    fi
    mkdir -p "$corpus" "$crashes"
    cp -n tests/fuzz/corpus/"$t"/* "$corpus"/
    LC_ALL=C ls "$crashes" >"$work/logs/$t.crashes-before"
    # shellcheck disable=SC2086
    "$dir/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
        -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$crashes/" \
        ${FUZZ_ARGS:-} "$corpus" </dev/null >"$work/logs/$t.log" 2>&1 &
    pids[$t]=$!
}

# A target passes when it exited 0 after its time, with no sanitizer or
# libFuzzer report in its log.
verdict() {
    local t=$1 rc=$2 log=$work/logs/$1.log crashes=$work/crashes/$1
    local done_line units new
    done_line=$(grep -a '^Done [0-9]* runs' "$log" | tail -n 1)
    units=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    new=$(LC_ALL=C ls "$crashes" | LC_ALL=C comm -13 "$work/logs/$t.crashes-before" -)
    rm -f "$work/logs/$t.crashes-before"
    if ((rc == 0)) && [[ -n $done_line && -z $new ]] &&
       ! grep -aqE '^==[0-9]+==ERROR|runtime error:|^SUMMARY: |property broken|deadly signal|ALARM: working on the last Unit|out-of-memory' "$log"; then
        echo "fuzz $t: ok, ${units:-?} executions ($done_line)"
        passed=$((passed + 1))
        return
    fi
    echo "fuzz $t: FAILED (exit $rc), log $log"
    grep -aE 'ERROR|runtime error|property broken|SUMMARY|ALARM|deadly signal|out-of-memory' "$log" |
        head -n 20 | sed 's/^/    /'
    for f in $new; do
        echo "    input: $crashes/$f ($(stat -c %s "$crashes/$f") bytes):"
        od -An -c "$crashes/$f" | head -n 16 | sed 's/^/     /'
        echo "    replay: $dir/fuzz_$t $crashes/$f"
    done
    failed=$((failed + 1))
}

declare -A pids
running=()
for t in "$@"; do
    if [[ ! -x $dir/fuzz_$t || ! -d tests/fuzz/corpus/$t ]]; then
        echo "fuzz $t: FAILED, no $dir/fuzz_$t or no tests/fuzz/corpus/$t"
        failed=$((failed + 1))
        continue
    fi
    start "$t"
    running+=("$t")
    if ((${#running[@]} >= jobs)); then
        for r in "${running[@]}"; do
            wait "${pids[$r]}"
            verdict "$r" $?
        done
        running=()
    fi
done
for r in "${running[@]}"; do
    wait "${pids[$r]}"
    verdict "$r" $?
done

echo "$passed passed, $failed failed"
((failed == 0))
