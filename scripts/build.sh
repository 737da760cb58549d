#!/usr/bin/env bash
# Configures and builds framegate into BUILD_DIR (default build/). Extra args go to cmake.
# BUILD_TARGETS (space-separated) builds only those targets instead of all.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
targets=()
for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
