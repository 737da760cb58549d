#!/usr/bin/env bash
# Fuzzes every libFuzzer target in tests/fuzz for FG_FUZZ_SECONDS each (default 60; 0 skips):
# a clang build with -DFG_FUZZ=ON (ASan + UBSan + libFuzzer) in build-fuzz/. Each target starts
# from a temporary copy of its committed corpus (tests/fuzz/corpus/<target>/ is never written)
# with its dictionary. Any crash, sanitizer report, leak, timeout or out-of-memory fails the
# script; the input that caused it is kept in build-fuzz/crashes/<target>/ (add it to the
# corpus once fixed: it becomes a regression test). Prints executions per second and total
# executions per target. FG_FUZZ_TARGETS="proto body" runs only those.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seconds=${FG_FUZZ_SECONDS:-60}
if [ "$seconds" = 0 ]; then
    echo "fuzz: skipped (FG_FUZZ_SECONDS=0)"
    exit 0
fi
build=${FG_FUZZ_BUILD_DIR:-build-fuzz}
targets=${FG_FUZZ_TARGETS:-proto body config http mjpeg auth tls image_jpeg image_png}

CC=${FG_FUZZ_CC:-clang} cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFG_FUZZ=ON \
    >/dev/null
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' $targets) >/dev/null

export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crashes=$build/crashes
failed=()
summary=()
for t in $targets; do
    corpus=$work/$t
    mkdir -p "$corpus" "$crashes/$t"
    cp "tests/fuzz/corpus/$t"/* "$corpus/"
    # Inputs bigger than any seed are worth trying where size matters (images, pipelined HTTP).
    case $t in
    image_*) max_len=65536 ;;
    http) max_len=16384 ;;
    config) max_len=8192 ;;
    *) max_len=4096 ;;
    esac
    log=$build/fuzz_$t.log
    echo "fuzz_$t: ${seconds}s (log: $log)"
    rc=0
    "$build/bin/fuzz_$t" -max_total_time="$seconds" -print_final_stats=1 \
        -dict="tests/fuzz/$t.dict" -artifact_prefix="$crashes/$t/" -max_len="$max_len" \
        -timeout=25 -rss_limit_mb=2048 "$corpus" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    line=$(printf 'fuzz_%-10s %8s exec/s %12s execs' "$t" "${rate:--}" "${execs:--}")
    if [ "$rc" != 0 ]; then
        failed+=("$t")
        line="$line   FAILED (exit $rc)"
        echo "---- fuzz_$t failed; the end of its log:"
        tail -n 60 "$log"
        echo "---- crash input(s) in $crashes/$t/:"
        ls -l "$crashes/$t/"
    fi
    summary+=("$line")
done

echo "fuzz: ${seconds}s per target"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: no crash"
