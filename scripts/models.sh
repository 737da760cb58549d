#!/usr/bin/env bash
# Prepares the models in ${FRAMEGATE_CACHE:-$HOME/.cache/framegate}, once (idempotent); part
# of setting up, run by scripts/run.sh and scripts/test.sh after the build:
#  - faceapi/: the npm packages pinned by scripts/faceapi/package-lock.json (npm ci: the one
#    download, at setup, never at build or run time);
#  - models/face-tiny.{cfg,weights}, models/face.names: face-api's Tiny Face Detector
#    converted to darknet by framegate-convert (the default model);
#  - faceapi-ref/: the agreement test's photos (PNGs, and JPEG frames made from astronaut.png
#    and darknet's photos) and face-api's own answers on them (node, JPEGs read by jpeg-js);
#  - models/yolov3-tiny.weights: Debian's yolov3-tiny.cfg with darknet's own random
#    initialisation (seed 1): no pretrained darknet weights can be downloaded here, so these
#    detect nothing meaningful (README "Models").
# Prints the default model's weights path. Usage: models.sh [BUILD_DIR] (default <repo>/build)
# FG_MODELS_REF=0 skips faceapi-ref/ (needs python3-skimage's photo and runs face-api);
# FG_MODELS_WEBTEST=0 skips webtest/ (playwright-core for tests/integration/test_gw_web.py).
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

# ---- face-api -> darknet ----
fa="$cache/faceapi"
pkg="$repo/scripts/faceapi"
if [ ! -s "$fa/node_modules/@vladmandic/face-api/model/tiny_face_detector_model.bin" ] ||
    ! cmp -s "$pkg/package-lock.json" "$fa/package-lock.json"; then
    rm -rf "$fa.tmp"
    mkdir -p "$fa.tmp"
    cp "$pkg/package.json" "$pkg/package-lock.json" "$fa.tmp/"
    (cd "$fa.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
    rm -rf "$fa"
    mv "$fa.tmp" "$fa"
fi
# webtest/: playwright-core for the browser test (drives Debian's chromium; downloads nothing).
# FG_MODELS_WEBTEST=0 skips it (the container image runs no browser test).
wt="$cache/webtest"
wpkg="$repo/scripts/webtest"
if [ "${FG_MODELS_WEBTEST:-1}" != 0 ] &&
    { [ ! -d "$wt/node_modules/playwright-core" ] ||
        ! cmp -s "$wpkg/package-lock.json" "$wt/package-lock.json"; }; then
    rm -rf "$wt.tmp"
    mkdir -p "$wt.tmp"
    cp "$wpkg/package.json" "$wpkg/package-lock.json" "$wt.tmp/"
    (cd "$wt.tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
    rm -rf "$wt"
    mv "$wt.tmp" "$wt"
fi
manifest="$fa/node_modules/@vladmandic/face-api/model/tiny_face_detector_model-weights_manifest.json"
if [ ! -s "$cache/models/face-tiny.weights" ] || [ "$manifest" -nt "$cache/models/face-tiny.weights" ]; then
    conv="$(dirname "$bin")/framegate-convert"
    if [ ! -x "$conv" ]; then
        echo "models.sh: $conv not found: build first" >&2
        exit 1
    fi
    "$conv" --manifest "$manifest" --out-dir "$cache/models" >&2
fi
ref="$cache/faceapi-ref"
astronaut=/usr/lib/python3/dist-packages/skimage/data/astronaut.png
# FG_MODELS_REF=0 skips it (the container image has no use for the test photos).
if [ "${FG_MODELS_REF:-1}" != 0 ] &&
    { [ ! -s "$ref/reference.json" ] || [ "$pkg/reference.mjs" -nt "$ref/reference.json" ]; }; then
    cp "$pkg/reference.mjs" "$fa/"
    rm -rf "$ref.tmp"
    (cd "$fa" && node reference.mjs "$astronaut" /usr/share/darknet/data "$ref.tmp") >&2
    rm -rf "$ref"
    mv "$ref.tmp" "$ref"
fi
echo "$out"
