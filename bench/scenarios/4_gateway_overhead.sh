#!/usr/bin/env bash
# Scenario 4: gateway overhead against the load balancers a user would pick instead, same
# machine, same body (dog.jpg, raw), same run:
#   framegate (2 backends, --simulate-ms 0: JPEG header parsed, no network)
#   nginx (least_conn) and haproxy (leastconn), each in front of 2 plain HTTP backends
#   (server blocks of a second nginx answering a fixed JSON; they read and discard the body)
#   direct to one plain backend (no balancer at all)
# and the same over HTTPS (TLS 1.2, one test certificate from scripts/certs.sh, the same
# suite on both: ECDHE-ECDSA-CHACHA20-POLY1305, framegate's first choice, as nginx's too):
# nginx `ssl` in front of the same backends vs framegate's https_cert. The bench client
# encrypts with mbedTLS on one thread and is the limit of both HTTPS rows: compare the
# gateway's CPU µs/frame there.
# Every balancer runs one worker/thread, like framegate's single loop. Installs nginx and
# haproxy from Debian if they are missing. Reports requests/s and p99 as ratios to nginx (the
# TLS rows to nginx over TLS). OUT=DIR writes the results elsewhere (a trial run).
source "$(dirname "$0")/common.sh"
out=${OUT:-$repo/bench/results/4_gateway_overhead}
mkdir -p "$out"
machine_info "$out"
if ! command -v nginx >/dev/null || ! command -v haproxy >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx haproxy >/dev/null
fi
users=${USERS:-50} dur=${DURATION:-15}
tmp=$(mktemp -d)
B1=18241 B2=18242 NGX=18243 HAP=18244 FG=18245 NGXS=18246 FGS=18247 FGP=18248
"$repo/scripts/certs.sh" init "$tmp/certs" --ip 127.0.0.1 >/dev/null 2>&1
# The backends are an nginx of their own (two workers, as framegate has two backend
# processes): in the balancer's process they would share its one worker, so the nginx row
# would pay for the backends' work too while framegate's and haproxy's rows do not.
cat > "$tmp/backends.conf" <<NGX
worker_processes 2;
pid $tmp/backends.pid;
error_log $tmp/backends.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$B1; location / { default_type application/json; return 200 '{"detections":[]}'; } }
    server { listen 127.0.0.1:$B2; location / { default_type application/json; return 200 '{"detections":[]}'; } }
}
NGX
cat > "$tmp/nginx.conf" <<NGX
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    keepalive_requests 1000000;
    upstream pool { least_conn; server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive 128; }
    server {
        listen 127.0.0.1:$NGX;
        location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$NGXS ssl;
        ssl_certificate $tmp/certs/gateway.crt;
        ssl_certificate_key $tmp/certs/gateway.key;
        ssl_protocols TLSv1.2;
        ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256;
        ssl_prefer_server_ciphers on;
        ssl_session_tickets on;
        location / { proxy_pass http://pool; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
NGX
cat > "$tmp/haproxy.cfg" <<HAP
global
    nbthread 1
    maxconn 4096
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAP
    default_backend be
backend be
    balance leastconn
    server b1 127.0.0.1:$B1
    server b2 127.0.0.1:$B2
HAP
nginx -c "$tmp/backends.conf" -p "$tmp"
nginx -c "$tmp/nginx.conf" -p "$tmp"
sleep 0.5
pids+=("$(cat "$tmp/backends.pid")" "$(cat "$tmp/nginx.pid")")
haproxy -f "$tmp/haproxy.cfg" > "$tmp/haproxy.log" 2>&1 &
hap_pid=$!
pids+=($!)
start_gateway $FG "$out/framegate.gateway.log" --set backends=2 --set "backend_args=--simulate-ms 0" \
    --set log_level=warn
# CPU time (user + system) of one process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU µs per frame of the gateway process ($2) over a run ($1): stable where req/s is not.
cpu_per_frame() {
    local name=$1 pid=$2 t0=$3 t1
    t1=$(cpu_ticks "$pid")
    /usr/bin/python3 -c 'import json, os, sys
j = json.load(open(sys.argv[1]))
t = (int(sys.argv[3]) - int(sys.argv[2])) / os.sysconf("SC_CLK_TCK")
print("%.1f" % (t * 1e6 / max(1, j["requests"])))' \
        "$out/$name.json" "$t0" "$t1" > "$out/$name.cpu"
}
run() {
    local t0=""
    [ -n "${4:-}" ] && t0=$(cpu_ticks "$4")
    "$bin/framegate-bench" --url "http://127.0.0.1:$2$3" --users "$users" --duration "$dur" \
        --body-mode raw --no-backends --json "$out/$1.json" --csv "$out/$1.csv" --quiet \
        > "$out/$1.txt"
    [ -n "$t0" ] && cpu_per_frame "$1" "$4" "$t0"
    echo "$1: $(sed -n 2p "$out/$1.txt")"
}
# The balancers' CPU too: nginx's one worker, haproxy's one process.
ngx_worker=$(pgrep -P "$(cat "$tmp/nginx.pid")" | head -1)
run nginx $NGX /v1/detect "$ngx_worker"
run haproxy $HAP /v1/detect "$hap_pid"
run framegate $FG /v1/detect "${pids[-1]}"
run direct $B1 /v1/detect
stop_gateway
# HTTPS: the same gateway settings, TLS on `listen`, plain on listen_plain for the readiness
start_gateway $FGP "$out/framegate_https.gateway.log" --set backends=2 \
    --set "backend_args=--simulate-ms 0" --set log_level=warn --set "listen=127.0.0.1:$FGS" \
    --set "listen_plain=127.0.0.1:$FGP" --set "https_cert=$tmp/certs/gateway.crt" \
    --set "https_key=$tmp/certs/gateway.key"
runs() {
    local t0=""
    [ -n "${4:-}" ] && t0=$(cpu_ticks "$4")
    "$bin/framegate-bench" --url "https://127.0.0.1:$2$3" --users "$users" --duration "$dur" \
        --body-mode raw --no-backends --json "$out/$1.json" --csv "$out/$1.csv" --quiet \
        > "$out/$1.txt"
    [ -n "$t0" ] && cpu_per_frame "$1" "$4" "$t0"
    echo "$1: $(sed -n 2p "$out/$1.txt")"
}
runs nginx_https $NGXS /v1/detect "$ngx_worker"
runs framegate_https $FGS /v1/detect "${pids[-1]}"
/usr/bin/python3 - "$out" <<'PY' | tee "$out/summary.txt"
import json, sys
out = sys.argv[1]
names = ("nginx", "haproxy", "framegate", "direct", "nginx_https", "framegate_https")
r = {k: json.load(open(f"{out}/{k}.json")) for k in names}
import os
print(f"{'target':16} {'req/s':>9} {'p99 ms':>8} {'fail':>5} {'rps/nginx':>10} {'p99/nginx':>10} "
      f"{'cpu us/frame':>16}")
for k, v in r.items():
    base = r["nginx_https" if k.endswith("_https") else "nginx"]
    cpu = open(f"{out}/{k}.cpu").read().strip() if os.path.exists(f"{out}/{k}.cpu") else "-"
    print(f"{k:16} {v['rps']:9.0f} {v['latency_ms']['p99']:8.2f} {v['failures']:5d} "
          f"{v['rps'] / base['rps']:10.2f} {v['latency_ms']['p99'] / base['latency_ms']['p99']:10.2f} "
          f"{cpu:>16}")
PY
"$repo/bench/plot.sh" "$out/plot.png" "Scenario 4: $users users, raw dog.jpg, no inference: balancer overhead" \
    "$out/nginx.csv:nginx" "$out/haproxy.csv:haproxy" "$out/framegate.csv:framegate" \
    "$out/direct.csv:direct" "$out/nginx_https.csv:nginx https" \
    "$out/framegate_https.csv:framegate https"
kill -QUIT "$(cat "$tmp/nginx.pid")" "$(cat "$tmp/backends.pid")" 2>/dev/null || true
rm -rf "$tmp"
