#!/usr/bin/env bash
# Runs the unit test binaries and/or the pytest suite, adds up their
# counts and prints one "N passed, N failed" line last.
#   run-tests.sh unit BIN...          unit binaries only
#   run-tests.sh integration          pytest only
#   run-tests.sh all BIN...           both
# With FUZZ_TARGETS set (make test), the unit part also runs those
# libFuzzer targets of FUZZ_DIR for FUZZ_SECONDS each (tests/fuzz/run.sh),
# one test each.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=$1
shift
passed=0
failed=0
skipped=0

count_line() {  # add "N passed, N failed" from a binary's last line
    local line=$1
    local p f
    p=$(sed -n 's/.*\b\([0-9]\+\) passed.*/\1/p' <<<"$line")
    f=$(sed -n 's/.*\b\([0-9]\+\) failed.*/\1/p' <<<"$line")
    if [[ -z "$p" || -z "$f" ]]; then
        return 1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

if [[ $mode == unit || $mode == all ]]; then
    for bin in "$@"; do
        echo "== $bin"
        out=$("$bin" 2>&1)
        rc=$?
        printf '%s\n' "$out" | tail -n 30
        if ! count_line "$(printf '%s\n' "$out" | tail -n 1)" || { ((rc != 0)) && ((failed == 0)); }; then
            echo "$bin: exited $rc without a count line"
            failed=$((failed + 1))
        fi
    done
    if [[ -n ${FUZZ_TARGETS:-} ]]; then
        echo "== fuzz ${FUZZ_TARGETS} (${FUZZ_SECONDS:-60}s each)"
        # shellcheck disable=SC2086
        out=$(./tests/fuzz/run.sh "${FUZZ_DIR:-build-fuzz}" $FUZZ_TARGETS 2>&1)
        rc=$?
        printf '%s\n' "$out" | tail -n 60
        if ! count_line "$(printf '%s\n' "$out" | tail -n 1)" || { ((rc != 0)) && ((failed == 0)); }; then
            echo "tests/fuzz/run.sh: exited $rc without a count line"
            failed=$((failed + 1))
        fi
    fi
fi

if [[ $mode == integration || $mode == all ]]; then
    mkdir -p build
    xml=build/pytest-results.xml
    rm -f "$xml"
    workers=()
    if /usr/bin/python3 -c 'import xdist' 2>/dev/null; then
        workers=(-n "${PYTEST_WORKERS:-2}")
    fi
    echo "== pytest tests/integration"
    /usr/bin/python3 -m pytest tests/integration -p no:cacheprovider -rs \
        "${workers[@]}" --junitxml="$xml" ${PYTEST_ARGS:-}
    rc=$?
    if [[ -f $xml ]]; then
        read -r t f e s < <(/usr/bin/python3 - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root)
tot = [sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")]
print(*tot)
PY
)
        passed=$((passed + t - f - e - s))
        failed=$((failed + f + e))
        skipped=$((skipped + s))
    fi
    if ((rc != 0 && rc != 5)) && [[ ! -f $xml ]]; then
        failed=$((failed + 1))
    fi
fi

echo
if ((skipped)); then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
((failed == 0))
