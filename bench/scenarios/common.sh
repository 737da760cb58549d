# Shared by the scenario scripts: build, start a gateway, run the bench, record the machine.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
bin=$build/bin
if [ ! -x "$bin/framegate-bench" ] || [ "${FG_REBUILD:-1}" = 1 ]; then
    BUILD_DIR=$build BUILD_TYPE=Release "$repo/scripts/build.sh" >/dev/null
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

machine_info() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
        echo "cores: $(nproc)"
        echo "memory: $(free -h | awk '/Mem:/ {print $2}')"
        echo "kernel: $(uname -r)"
        echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo none)"
    } > "$1/machine.txt"
}

# start_gateway PORT LOG ARGS... : starts framegate, waits until /readyz answers 200.
start_gateway() {
    local port=$1 log=$2
    shift 2
    "$bin/framegate" --listen "127.0.0.1:$port" --set log_level=info "$@" > "$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 600); do
        if curl -sf "http://127.0.0.1:$port/readyz" > /dev/null; then return 0; fi
        sleep 0.1
    done
    echo "gateway on $port not ready" >&2
    return 1
}

stop_gateway() {
    local p=${pids[-1]}
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    unset 'pids[-1]'
}
