#!/usr/bin/env bash
# The test command (CI runs it on a fresh clone): sets up, checks that setup installs every
# package the project reads, builds every build type the README and the benches use (any
# warning is an error in each), prepares models, runs the whole ctest suite, runs the pool and
# load tests under ThreadSanitizer, then the whole suite again under ASan + UBSan.
# Last, libFuzzer on every parser for FG_FUZZ_SECONDS per target (scripts/fuzz.sh).
# FG_TEST_SANITIZE=0 skips the ASan + UBSan pass, FG_TEST_TSAN=0 the TSan one,
# FG_FUZZ_SECONDS=0 the fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ "$(id -u)" -eq 0 ]; then scripts/setup.sh; else sudo scripts/setup.sh; fi
scripts/check-packages.sh

export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_suite() {
    local dir=$1 scale=${2:-0}
    # Unit tests in parallel; integration tests one at a time (they load both cores).
    (cd "$dir" && ctest --output-on-failure -L unit -j2 --timeout 120)
    # FG_SCALE=1: the 200-registered-backend test (minutes of CPU) runs in the plain pass.
    (cd "$dir" && FG_SCALE=$scale ctest --output-on-failure -L integration --timeout 600)
}

BUILD_DIR=build scripts/build.sh
# Release is what bench/scenarios/*.sh build: compiled (warnings fail it), not run.
BUILD_DIR=build-release BUILD_TYPE=Release scripts/build.sh
scripts/models.sh build
run_suite build 1

# ThreadSanitizer on the code that has threads (the pool's NNG callbacks, the bench's load
# generator) and on the gateway under load. Reports go to files, one per process (gateway,
# backends, test binaries); any report fails, even when the tests themselves passed.
if [ "${FG_TEST_TSAN:-1}" != 0 ]; then
    BUILD_DIR=build-tsan BUILD_TARGETS="framegate framegate-backend test_gw_pool test_bench_load" \
        scripts/build.sh -DFG_TSAN=ON
    reports=$root/build-tsan/tsan-reports
    rm -rf "$reports"
    mkdir -p "$reports"
    tsan_ok=1
    # setarch -R: GCC 12's TSan cannot map its shadow memory on kernels with more ASLR
    # entropy than Debian 12's default (vm.mmap_rnd_bits > 28); without ASLR it always can.
    (cd build-tsan && TSAN_OPTIONS="log_path=$reports/tsan:suppressions=$root/tests/tsan.supp:halt_on_error=0:history_size=4" \
        setarch "$(uname -m)" -R \
        ctest --output-on-failure --timeout 900 -R '^(test_gw_pool|test_bench_load|test_gw_load)$') ||
        tsan_ok=0
    if compgen -G "$reports/tsan.*" >/dev/null; then
        for f in "$reports"/tsan.*; do
            echo "==== ThreadSanitizer report: $f"
            cat "$f"
        done
        tsan_ok=0
    fi
    [ "$tsan_ok" = 1 ] || { echo "framegate: the ThreadSanitizer run failed" >&2; exit 1; }
fi

if [ "${FG_TEST_SANITIZE:-1}" != 0 ]; then
    BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DFG_SANITIZE=ON
    run_suite build-asan
fi
# libFuzzer on every parser (tests/fuzz) under ASan + UBSan, FG_FUZZ_SECONDS per target
# (default 60; 0 skips); any crash fails, its input kept in build-fuzz/crashes/.
# 30 s per target keeps CI well inside its time limit; FG_FUZZ_SECONDS=60 (or more) locally.
FG_FUZZ_SECONDS=${FG_FUZZ_SECONDS:-30} scripts/fuzz.sh
echo "framegate: all test suites passed"
