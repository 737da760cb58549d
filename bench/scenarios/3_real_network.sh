#!/usr/bin/env bash
# Scenario 3: the real yolov3-tiny network (stock libdarknet) with a few cameras: frames/s end
# to end next to the backends' own inference time (framegate_inference_seconds).
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/3_real_network
mkdir -p "$out"
machine_info "$out"
"$repo/scripts/models.sh" "$build" > /dev/null
backends=${BACKENDS:-2} users=${USERS:-4} dur=${DURATION:-30}
# Only yolov3-tiny, on a fixed pool (its own min is 0, so the top-level backends= would not
# pin it).
start_gateway 18183 "$out/gateway.log" --set models=yolov3-tiny \
    --set model.yolov3-tiny.backends="$backends"
"$bin/framegate-bench" --url http://127.0.0.1:18183/v1/detect --users "$users" \
    --duration "$dur" --body-mode raw --timeout-ms 60000 \
    --csv "$out/real.csv" --json "$out/real.json" --quiet | tee "$out/real.txt"
curl -s http://127.0.0.1:18183/metrics > "$out/metrics.txt"
stop_gateway
awk '/^framegate_inference_seconds_sum/ {s=$2} /^framegate_inference_seconds_count/ {c=$2}
     END {printf "backend inference: %d frames, mean %.1f ms per frame\n", c, 1000*s/c}' \
    "$out/metrics.txt" | tee -a "$out/real.txt"
"$repo/bench/plot.sh" "$out/plot.png" "Scenario 3: real yolov3-tiny (stock darknet), $backends backends, $users cameras" \
    "$out/real.csv:real network"
