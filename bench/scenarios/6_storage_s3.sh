#!/usr/bin/env bash
# Scenario 6: keeping frames in S3 (issue 16). The gateway runs on one core (taskset -c 0),
# simulated 1 ms inference, store = s3:// on the local S3 server of the tests
# (tests/integration/s3fake.py: Python, every signature checked with botocore), spool on.
#  A. write rate: closed loop, USERS clients for DURATION s with the store up; objects the
#     store accepted per second (an input and an answer per frame).
#  B. outage: the S3 server is stopped for OUTAGE s while RATE frames/s arrive (open loop),
#     then started again with no more frames; the time until the spool is empty, and the
#     drain rate (objects/s). Prints one summary line per part; files in bench/results/6_*.
source "$(dirname "$0")/common.sh"
out=$repo/bench/results/6_storage_s3
mkdir -p "$out"
machine_info "$out"
users=${USERS:-8} dur=${DURATION:-20} rate=${RATE:-50} outage=${OUTAGE:-60}
port=18186 s3port=18187
img=/usr/share/darknet/data/person.jpg
work=$(mktemp -d /tmp/fg-bench6-XXXXXX)
s3pid=
start_s3() {
    /usr/bin/python3 "$repo/tests/integration/s3fake.py" --port $s3port --dir "$work/s3" \
        --bucket bench >> "$out/s3fake.log" 2>&1 &
    s3pid=$!
    pids+=($s3pid)
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$s3port/" && return 0; sleep 0.1; done
    echo "s3fake not up" >&2; return 1
}
stop_s3() { kill -TERM "$s3pid" 2>/dev/null || true; wait "$s3pid" 2>/dev/null || true; }
storage() { curl -s "http://127.0.0.1:$port/v1/storage"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d' + sys.argv[1]))" "$1"; }
: > "$out/s3fake.log"
start_s3
weights=${FRAMEGATE_CACHE:-$HOME/.cache/framegate}/models/yolov3-tiny.weights
taskset -c 0 true  # fail early without util-linux
start_gateway_pinned() {
    taskset -c 0 "$bin/framegate" --listen "127.0.0.1:$port" --set log_level=info \
        --set models=app --set model.app.cfg=/usr/share/darknet/cfg/yolov3-tiny.cfg \
        --set "model.app.weights=$weights" --set model.app.names=/usr/share/darknet/data/coco.names \
        --set backends=2 --set "backend_args=--simulate-ms 1" --set queue_size=10000 \
        --set store=s3://bench/frames --set "s3_endpoint=http://127.0.0.1:$s3port" \
        --set s3_path_style=on --set s3_access_key=S3RVER --set s3_secret_key=S3RVER \
        --set "spool_dir=$work/spool" --set spool_max_bytes=4G --set store_concurrency=16 \
        --set store_retry_max_ms=1000 > "$out/gateway.log" 2>&1 &
    gwpid=$!
    pids+=($gwpid)
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/readyz" > /dev/null && return 0; sleep 0.1; done
    echo "gateway not ready" >&2; return 1
}
start_gateway_pinned

# A. write rate
w0=$(storage | field '["written"]'); t0=$(date +%s.%N)
"$bin/framegate-bench" --url "http://127.0.0.1:$port/v1/detect?camera=bench" --users "$users" \
    --duration "$dur" --body-file "$img" --quiet --json "$out/write.json" > "$out/write.txt"
for _ in $(seq 600); do [ "$(storage | field '["queued"]+d["inflight"]+d["spool"]["objects"]')" = 0 ] && break; sleep 0.1; done
w1=$(storage | field '["written"]'); t1=$(date +%s.%N)
write_rate=$(python3 -c "print(f'{($w1-$w0)/($t1-$t0):.0f}')")
fps=$(python3 -c "import json; print(json.load(open('$out/write.json'))['rps'])")
echo "A. write rate: $((w1 - w0)) objects in $(python3 -c "print(f'{$t1-$t0:.1f}')") s until all were written = $write_rate objects/s (frames answered: $fps/s for ${dur} s; gateway on 1 core, $users clients, S3 server: Python s3fake with SigV4 checks)" | tee "$out/summary.txt"

# B. outage
stop_s3
"$bin/framegate-bench" --url "http://127.0.0.1:$port/v1/detect?camera=outage" --rate "$rate" \
    --connections 16 --duration "$outage" --body-file "$img" --quiet --json "$out/outage.json" > "$out/outage.txt"
spooled=$(storage | field '["spool"]["objects"]')
bytes=$(storage | field '["spool"]["bytes"]')
failed=$(python3 -c "import json; d=json.load(open('$out/outage.json')); print(f\"{d['failures']} of {d['requests']}\")")
w0=$(storage | field '["written"]')
start_s3
t0=$(date +%s.%N)
for _ in $(seq 6000); do [ "$(storage | field '["spool"]["objects"]+d["inflight"]')" = 0 ] && break; sleep 0.1; done
t1=$(date +%s.%N)
w1=$(storage | field '["written"]')
dropped=$(storage | field '["dropped"]')
echo "B. ${outage} s outage at $rate frames/s: $spooled objects ($((bytes / 1048576)) MiB) spooled, answer failures: $failed; drained in $(python3 -c "print(f'{$t1-$t0:.1f}')") s after the store returned ($(python3 -c "print(f'{($w1-$w0)/($t1-$t0):.0f}')") objects/s), dropped: $dropped" | tee -a "$out/summary.txt"
kill -TERM "$gwpid"; wait "$gwpid" 2>/dev/null || true
stop_s3
rm -rf "$work"
