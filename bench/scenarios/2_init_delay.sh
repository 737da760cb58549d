#!/usr/bin/env bash
# Scenario 2: the reference "adding initialisation time" experiment: scenario 1's autoscaled
# run with backends that take 10 s to load their model before they can serve.
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/2_init_delay
mkdir -p "$out"
machine_info "$out"
users=${USERS:-1000} rate=${SPAWN_RATE:-100} dur=${DURATION:-60}
start_gateway 18182 "$out/gateway.log" --set min_backends=1 --set max_backends=20 \
    --set scale_interval_ms=500 --set stable_window_ms=30s --set panic_window_ms=3s \
    --set max_starting=8 --set max_connections=2048 \
    --set "backend_args=--simulate-ms 100 --init-delay-ms 10000"
"$bin/framegate-bench" --url http://127.0.0.1:18182/v1/detect --users "$users" \
    --spawn-rate "$rate" --duration "$dur" --body-mode base64 --timeout-ms 60000 \
    --csv "$out/autoscaled_init10s.csv" --json "$out/autoscaled_init10s.json" --quiet \
    | tee "$out/autoscaled_init10s.txt"
stop_gateway
"$repo/bench/plot.sh" "$out/plot.png" "Scenario 2: $users users at $rate/s, 100 ms inference, 10 s backend start" \
    "$out/autoscaled_init10s.csv:autoscaled, 10 s init"
