#!/usr/bin/env bash
# Installs every build and test dependency of framegate from Debian 12's packages.
# Idempotent; must run as root. Safe to run again: apt skips what is installed.
# Usage: setup.sh [--image | --runtime | --bench]
#   --image    only what builds the binaries and the models (the container's builder stage)
#   --runtime  only the libraries the binaries load (the container's runtime stage)
#   --bench    everything, plus what scripts/bench-inference.sh compares against: OpenCV, and
#              ONNX Runtime (python3-onnx for the converter, onnxruntime-node from
#              bench/inference/ort's lockfile); nginx and haproxy for bench scenario 4
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi

mode=${1:-}
# What the binaries load at run time (the container image's runtime stage: --runtime).
# openssl: scripts/certs.sh, which the compose backends profile runs on first start.
# libgomp1: the backend's OpenMP (the resize on oneDNN's threads; libdnnl2 needs it too).
# libjpeg62-turbo: libjpeg's own API, for the backend's banded decode (backend/image_jpeg.c)
# and the restart-marker JPEGs its test and bench write.
runtime_pkgs=(libuv1 libcjson1 libnng1 libturbojpeg0 libjpeg62-turbo libspng0 libopenblas0-pthread
    libdnnl2 libgomp1 libcurl4 libmbedtls14 openssl)
# What builds them and converts the face model (the image's builder stage: --image).
build_pkgs=(
    build-essential cmake pkg-config ca-certificates
    libuv1-dev node-llhttp libnng-dev libmbedtls-dev libturbojpeg0-dev libjpeg62-turbo-dev
    libcjson-dev libcurl4-openssl-dev libcmocka-dev libopenblas-dev libspng-dev
    libdnnl-dev # oneDNN: the backend's default forward-pass engine (backend/dnnl.c)
)
case "$mode" in
--runtime) pkgs=("${runtime_pkgs[@]}") ;;
--image)
    # darknet's package depends on OpenCV (362 packages, 684 MB) for code framegate never
    # runs: the builder unpacks the package alone (scripts/docker/Dockerfile).
    pkgs=("${build_pkgs[@]}" nodejs npm)
    ;;
*)
    pkgs=("${build_pkgs[@]}" darknet)
    # node + npm fetch face-api at setup (scripts/models.sh); Debian's, unless one is installed.
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
    ;;
esac
# Everything else is for development and tests; a container image skips it.
if [ "$mode" != "--image" ] && [ "$mode" != "--runtime" ]; then
    pkgs+=(git curl python3)
    pkgs+=(python3-skimage) # astronaut.png (skimage/data): the face model's test photo
    # Test-only tools: compose validation, promtool, load and plots, the Kubernetes manifests'
    # test (python3-yaml), and the real `docker-compose up` test (a Docker engine, and
    # debootstrap for scripts/docker/base-image.sh where no registry is reachable).
    pkgs+=(docker-compose prometheus python3-locust gnuplot-nox python3-pil python3-yaml)
    pkgs+=(docker.io debootstrap)
    # tests/integration/test_gw_web.py: the page in a real browser (driven by playwright-core
    # from scripts/webtest, installed by npm ci from its lockfile at test time)
    pkgs+=(chromium)
    # scripts/fuzz.sh: libFuzzer and the sanitizer runtimes come with Debian's clang.
    pkgs+=(clang libclang-rt-14-dev)
    # Remote-backend tests: namespace "hosts" (ip netns, veth), partitions (iptables DROP),
    # certificates (openssl CLI).
    pkgs+=(iproute2 iptables openssl)
    # tests/integration/{s3,ec2}fake.py check SigV4 with botocore, a signer independent of ours;
    # gcefake.py verifies the RS256 JWT with PyJWT
    pkgs+=(python3-botocore python3-jwt python3-cryptography)
fi
# The inference bench compares against OpenCV's DNN module and ONNX Runtime
# (scripts/bench-inference.sh); bench/inference/darknet2onnx.py builds the ONNX graph with
# Debian's python3-onnx. Scenario 4 puts nginx and haproxy (the balancers a user would pick
# instead) in front of the same backends.
if [ "$mode" = "--bench" ]; then
    pkgs+=(libopencv-dev python3-onnx nginx haproxy)
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
# ONNX Runtime itself: onnxruntime-node, pinned by bench/inference/ort/package-lock.json.
# --ignore-scripts: libonnxruntime.so is in the package; its install script only downloads GPU
# providers. Installed beside the worker that loads it (node_modules is not committed).
if [ "$mode" = "--bench" ]; then
    ort="$(cd "$(dirname "$0")/.." && pwd)/bench/inference/ort"
    if [ ! -f "$ort/node_modules/onnxruntime-node/package.json" ] ||
        ! cmp -s "$ort/package-lock.json" "$ort/node_modules/.package-lock.json.installed"; then
        (cd "$ort" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        cp "$ort/package-lock.json" "$ort/node_modules/.package-lock.json.installed"
    fi
fi
echo "setup.sh: all dependencies installed"
