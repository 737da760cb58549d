#!/usr/bin/env bash
# Generates the default model's weights, deterministically, if they are not there yet:
# Debian's yolov3-tiny.cfg with darknet's own random initialisation (seed 1), saved to
# ${FRAMEGATE_CACHE:-$HOME/.cache/framegate}/models/yolov3-tiny.weights, and prints the path.
# No pretrained weights can be downloaded here: these detect nothing meaningful (README
# "Models"). Idempotent. Usage: models.sh [BUILD_DIR]   (default: <repo>/build)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$repo/build}
bin="$(cd "$build" 2>/dev/null && pwd)/bin/framegate-backend" || true
cfg=/usr/share/darknet/cfg/yolov3-tiny.cfg
cache=${FRAMEGATE_CACHE:-${HOME:-/root}/.cache/framegate}
out="$cache/models/yolov3-tiny.weights"
mkdir -p "$cache/models"
if [ ! -s "$out" ]; then
    if [ ! -x "$bin" ]; then
        echo "models.sh: $build/bin/framegate-backend not found: build first" >&2
        exit 1
    fi
    # Write to a private temp file and rename: concurrent runs never see half a file.
    tmp=$(mktemp "$cache/models/.yolov3-tiny.XXXXXX")
    trap 'rm -f "$tmp"' EXIT
    if ! log=$("$bin" --gen-weights "$tmp" --cfg "$cfg" --seed 1 2>&1); then
        echo "$log" >&2
        exit 1
    fi
    chmod 644 "$tmp" # mktemp makes it private; the weights are for every user
    mv "$tmp" "$out"
fi
echo "$out"
