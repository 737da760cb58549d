#!/usr/bin/env bash
# Generates the default model's weights, deterministically, if they are not there yet:
# Debian's yolov3-tiny.cfg with darknet's own random initialisation (seed 1), saved to
# ${FRAMEGATE_CACHE:-$HOME/.cache/framegate}/models/yolov3-tiny.weights.
# These weights detect nothing meaningful; see README "Models". Usage: models.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
cache=${FRAMEGATE_CACHE:-${HOME:-/root}/.cache/framegate}
out="$cache/models/yolov3-tiny.weights"
mkdir -p "$cache/models"
if [ ! -s "$out" ]; then
    "$build/bin/framegate-backend" --gen-weights "$out.tmp" \
        --cfg /usr/share/darknet/cfg/yolov3-tiny.cfg --seed 1 >/dev/null 2>&1
    mv "$out.tmp" "$out"
fi
echo "$out"
