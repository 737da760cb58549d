#!/usr/bin/env bash
# Scenario 1: the reference App Engine / Cloud Run comparison. 1000 users spawned at 100/s,
# no wait, 60 s, base64 JPEG bodies, 100 ms simulated inference: one fixed backend against
# the autoscaler (min 1, max 20: the reference's instance limit).
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/1_fixed_vs_autoscaled
mkdir -p "$out"
machine_info "$out"
users=${USERS:-1000} rate=${SPAWN_RATE:-100} dur=${DURATION:-60}
for variant in fixed autoscaled; do
    if [ $variant = fixed ]; then set_args=(--set backends=1); else
        set_args=(--set min_backends=1 --set max_backends=20 --set scale_interval_ms=500
                  --set stable_window_ms=30s --set panic_window_ms=3s --set max_starting=8)
    fi
    start_gateway 18181 "$out/$variant.gateway.log" "${set_args[@]}" \
        --set "backend_args=--simulate-ms 100" --set max_connections=2048
    "$bin/framegate-bench" --url http://127.0.0.1:18181/v1/detect --users "$users" \
        --spawn-rate "$rate" --duration "$dur" --body-mode base64 --timeout-ms 60000 \
        --csv "$out/$variant.csv" --json "$out/$variant.json" --quiet | tee "$out/$variant.txt"
    stop_gateway
done
"$repo/bench/plot.sh" "$out/plot.png" "Scenario 1: $users users at $rate/s, 100 ms inference: fixed 1 backend vs autoscaled 1..20" \
    "$out/fixed.csv:fixed" "$out/autoscaled.csv:autoscaled"
