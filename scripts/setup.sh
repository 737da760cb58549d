#!/usr/bin/env bash
# Installs every build and test dependency of framegate from Debian 12's packages.
# Idempotent; must run as root. Safe to run again: apt skips what is installed.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

pkgs=(
    build-essential cmake pkg-config git ca-certificates curl
    libuv1-dev node-llhttp libnng-dev libmbedtls-dev libturbojpeg0-dev
    darknet libcjson-dev libcurl4-openssl-dev libcmocka-dev libopenblas-dev libspng-dev
    python3
    python3-skimage # astronaut.png (skimage/data): the face model's test photo
)
# node + npm fetch face-api at setup (scripts/models.sh); Debian's, unless one is installed.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
# Test-only tools (compose validation, promtool); a container image skips them (--image).
if [ "${1:-}" != "--image" ]; then
    pkgs+=(docker-compose prometheus python3-locust gnuplot-nox python3-pil)
    # tests/integration/test_gw_web.py: the page in a real browser (driven by playwright-core
    # from scripts/webtest, installed by npm ci from its lockfile at test time)
    pkgs+=(chromium)
    # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes come with Debian's clang.
    pkgs+=(clang libclang-rt-14-dev)
    # tests/integration/s3fake.py checks SigV4 with botocore, a signer independent of ours
    pkgs+=(python3-botocore)
fi
# The inference bench compares against OpenCV's DNN module (scripts/bench-inference.sh).
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(libopencv-dev)
fi

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup.sh: all dependencies installed"
