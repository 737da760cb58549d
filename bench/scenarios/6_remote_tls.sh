#!/usr/bin/env bash
# Scenario 6: backends on other machines. One gateway feeding 3 backends (--simulate-ms 0:
# the JPEG header is read, no network runs, so the link is what is measured) that are
#   ipc:    child processes of the gateway on ipc:// sockets (the default),
#   tcp:    on 3 network-namespace "hosts" (veth + bridge), plain tcp:// (allow_insecure),
#   tls:    the same hosts over tls+tcp:// with mutual TLS (scripts/certs.sh certificates).
# Same body (dog.jpg, raw), same closed-loop users. Reports requests/s, p99 and the frame
# bytes/s through the gateway, each as a ratio to ipc. Needs root (ip netns).
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/6_remote_tls
mkdir -p "$out"
machine_info "$out"
users=${USERS:-30} dur=${DURATION:-10}
tag=fgb$$
tmp=$(mktemp -d)
hosts=3
net_down() {
    for i in $(seq $hosts); do
        for p in $(ip netns pids "$tag-h$i" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        ip netns del "$tag-h$i" 2>/dev/null || true
        ip link del "${tag}v$i" 2>/dev/null || true
    done
    ip link del "${tag}br" 2>/dev/null || true
    rm -rf "$tmp"
}
trap 'cleanup; net_down' EXIT
ip link add "${tag}br" type bridge
ip addr add 10.78.0.1/24 dev "${tag}br"
ip link set "${tag}br" up
"$repo/scripts/certs.sh" init "$tmp/pki" >/dev/null
static_tls="" static_tcp=""
for i in $(seq $hosts); do
    ns=$tag-h$i ip=10.78.0.$((i + 1))
    ip netns add "$ns"
    ip link add "${tag}v$i" type veth peer name eth0 netns "$ns"
    ip link set "${tag}v$i" master "${tag}br" up
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    "$repo/scripts/certs.sh" issue "$tmp/pki" "h$i" --ip "$ip" >/dev/null
    for mode in tls tcp; do
        port=$([ $mode = tls ] && echo 7000 || echo 7001)
        scheme=$([ $mode = tls ] && echo tls+tcp || echo tcp)
        extra=()
        [ $mode = tls ] && extra=(--tls-cert "$tmp/pki/h$i.crt" --tls-key "$tmp/pki/h$i.key" --tls-ca "$tmp/pki/ca.crt")
        [ $mode = tcp ] && extra=(--allow-insecure)
        ip netns exec "$ns" "$bin/framegate-backend" --listen "$scheme://$ip:$port" --simulate-ms 0 \
            --model-name app --instance "h$i-$mode" "${extra[@]}" > "$tmp/h$i-$mode.log" 2>&1 &
    done
    static_tls+="tls+tcp://$ip:7000 "
    static_tcp+="tcp://$ip:7001 "
done
FG=18261
# /readyz answers 200 while backends start; measure only once all 3 answer.
wait_ready() {
    for _ in $(seq 600); do
        n=$(curl -sf "http://127.0.0.1:$FG/readyz" | grep -o '"backends_ready":[0-9]*' | cut -d: -f2)
        [ "${n:-0}" -ge $hosts ] && return 0
        sleep 0.1
    done
    echo "backends not ready" >&2
    return 1
}
run() {
    wait_ready
    "$bin/framegate-bench" --url "http://127.0.0.1:$FG/v1/detect" --users "$users" --duration "$dur" \
        --body-mode raw --no-backends --json "$out/$1.json" --csv "$out/$1.csv" --quiet \
        > "$out/$1.txt"
    echo "$1: $(sed -n 2p "$out/$1.txt")"
}
common=(--set log_level=warn --set models=app --set default_model=app)
local_model=(--set model.app.cfg=/usr/share/darknet/cfg/yolov3-tiny.cfg
    --set model.app.weights=/dev/null --set model.app.names=/usr/share/darknet/data/coco.names)
start_gateway $FG "$out/ipc.gateway.log" "${common[@]}" "${local_model[@]}" --set backends=3 \
    --set "backend_args=--simulate-ms 0"
run ipc
stop_gateway
start_gateway $FG "$out/tcp.gateway.log" "${common[@]}" --set allow_insecure_backends=true \
    --set "model.app.backends_static=$static_tcp"
run tcp
stop_gateway
start_gateway $FG "$out/tls.gateway.log" "${common[@]}" --set "tls_ca=$tmp/pki/ca.crt" \
    --set "tls_cert=$tmp/pki/gateway.crt" --set "tls_key=$tmp/pki/gateway.key" \
    --set "model.app.backends_static=$static_tls"
run tls
stop_gateway
body=$(stat -c %s /usr/share/darknet/data/dog.jpg)
/usr/bin/python3 - "$out" "$body" <<'PY' | tee "$out/summary.txt"
import json, sys
out, body = sys.argv[1], int(sys.argv[2])
r = {k: json.load(open(f"{out}/{k}.json")) for k in ("ipc", "tcp", "tls")}
base = r["ipc"]
print(f"3 backends (--simulate-ms 0), raw dog.jpg ({body} bytes), closed loop")
print(f"{'link':5} {'req/s':>8} {'p99 ms':>8} {'fail':>5} {'MB/s in':>8} {'rps/ipc':>8} {'p99/ipc':>8}")
for k, v in r.items():
    print(f"{k:5} {v['rps']:8.0f} {v['latency_ms']['p99']:8.2f} {v['failures']:5d} "
          f"{v['rps'] * body / 1e6:8.1f} {v['rps'] / base['rps']:8.2f} "
          f"{v['latency_ms']['p99'] / base['latency_ms']['p99']:8.2f}")
PY
"$repo/bench/plot.sh" "$out/plot.png" "Scenario 6: $users users, raw dog.jpg, no inference: ipc vs tcp vs mutual TLS" \
    "$out/ipc.csv:ipc" "$out/tcp.csv:tcp" "$out/tls.csv:tls" || true
