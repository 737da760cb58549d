#!/usr/bin/env bash
# The test command: sets up, builds, prepares models, runs the whole ctest suite, then
# builds again with ASan + UBSan and runs it once more. FG_TEST_SANITIZE=0 skips the second.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ "$(id -u)" -eq 0 ]; then scripts/setup.sh; else sudo scripts/setup.sh; fi

export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

run_suite() {
    local dir=$1
    # Unit tests in parallel; integration tests one at a time (they load both cores).
    (cd "$dir" && ctest --output-on-failure -L unit -j2 --timeout 120)
    (cd "$dir" && ctest --output-on-failure -L integration --timeout 600)
}

BUILD_DIR=build scripts/build.sh
scripts/models.sh build
run_suite build

if [ "${FG_TEST_SANITIZE:-1}" != 0 ]; then
    BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DFG_SANITIZE=ON
    run_suite build-asan
fi
echo "framegate: all test suites passed"
