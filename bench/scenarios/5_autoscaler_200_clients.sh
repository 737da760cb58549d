#!/usr/bin/env bash
# The autoscaler's acceptance run: 200 clients at 20 new clients/s for 60 s against 200 ms
# simulated backends, autoscaled (min 1, max 8) next to a fixed single backend.
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/5_autoscaler_200_clients
mkdir -p "$out"
machine_info "$out"
for variant in fixed autoscaled; do
    if [ $variant = fixed ]; then set_args=(--set backends=1); else
        set_args=(--set min_backends=1 --set max_backends=8); fi
    start_gateway 18185 "$out/$variant.gateway.log" "${set_args[@]}" \
        --set "backend_args=--simulate-ms 200"
    "$bin/framegate-bench" --url http://127.0.0.1:18185/v1/detect --users 200 \
        --spawn-rate 20 --duration "${DURATION:-60}" --body-mode raw --timeout-ms 60000 \
        --csv "$out/$variant.csv" --json "$out/$variant.json" --quiet | tee "$out/$variant.txt"
    stop_gateway
done
"$repo/bench/plot.sh" "$out/plot.png" "200 clients at 20/s, 200 ms inference: fixed 1 backend vs autoscaled 1..8" \
    "$out/fixed.csv:fixed" "$out/autoscaled.csv:autoscaled"
