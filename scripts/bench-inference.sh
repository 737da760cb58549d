#!/bin/sh
# Builds and runs bench/inference: stock libdarknet vs framegate's engines (backend/dnnl.c,
# backend/fast.c) vs OpenCV DNN and ONNX Runtime (bench/inference/darknet2onnx.py +
# onnxruntime-node) on yolov3-tiny (and the face model if it is in the cache), at 1 and 2
# threads, and what decode = fast saves and costs. The oneDNN probe is another target of
# the same build: cmake --build build-inference --target framegate-dnnl-probe.
# Results: bench/results/inference/latest.{json,txt}. Extra arguments go to the binary
# (--reps N, --stock-reps N, --warmup N, --threads MAX, --sgemm-n N, --cfg FILE, --ort 0|1,
# --gap-ms N, --bf16 0|1: precision = bf16 timed and checked against fp32, default 1).
# Installs what it needs first (scripts/setup.sh --bench adds libopencv-dev, python3-onnx and
# bench/inference/ort/node_modules).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -eq 0 ]; then "$root/scripts/setup.sh" --bench; else sudo "$root/scripts/setup.sh" --bench; fi
build=${FG_BENCH_BUILD:-$root/build-inference}
# OpenBLAS's threads spin for 2^28 cycles (~0.1 s) after each call by default: after the BLAS
# engine's turn one of them held the second core through the next engine's turn (framegate's
# two-band decode at 2 threads measured 4.1-5.3 ms instead of 2.3). 2^4 cycles: they sleep at
# once, as a backend on the oneDNN engine never wakes them. Read when libopenblas loads.
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFG_BENCH_INFERENCE=ON >/dev/null
cmake --build "$build" -j2 --target framegate-bench-inference >/dev/null
bin=$(find "$build" -name framegate-bench-inference -type f -perm -u+x | head -n 1)
mkdir -p "$root/bench/results/inference"
exec "$bin" --out "$root/bench/results/inference" "$@"
