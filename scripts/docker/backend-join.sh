#!/usr/bin/env bash
# A backend container of the compose backends profile (docker-compose.backends.yml's `backend`
# service): serves one model over mutual TLS and registers with the gateway's join listener,
# which dials it back at tls+tcp://HOSTNAME.NETWORK:PORT (certs-init.sh issued the certificate
# for those names). Every setting comes from the environment (the compose file documents it):
#   FRAMEGATE_JOIN             the gateway's join_listen as the backend reaches it
#   FRAMEGATE_NETWORK          the compose network's name
#   FRAMEGATE_BACKEND_PORT     where it listens (7000)
#   FRAMEGATE_BACKEND_MODEL, _CFG, _WEIGHTS, _NAMES, _PREPROCESS, _INPUT_SIZE, _THRESHOLD,
#   _NMS                       the model it serves and how (framegate-backend --help)
#   FRAMEGATE_BACKEND_ARGS     more flags, split on spaces (e.g. "--threads 2 --capacity 2")
# exec: SIGTERM from the engine reaches the backend, which deregisters, answers what it holds
# and exits.
set -euo pipefail

pki=${FRAMEGATE_PKI_DIR:-/etc/framegate/pki}
host=$(hostname)
port=${FRAMEGATE_BACKEND_PORT:-7000}
args=(
    --listen "tls+tcp://0.0.0.0:$port"
    --advertise "tls+tcp://$host.${FRAMEGATE_NETWORK:?}:$port"
    --join "${FRAMEGATE_JOIN:?}" --instance "$host"
    --tls-cert "$pki/backend.crt" --tls-key "$pki/backend.key" --tls-ca "$pki/ca.crt"
    --model-name "${FRAMEGATE_BACKEND_MODEL:?}" --cfg "${FRAMEGATE_BACKEND_CFG:?}"
    --weights "${FRAMEGATE_BACKEND_WEIGHTS:?}" --names "${FRAMEGATE_BACKEND_NAMES:?}"
    --preprocess "${FRAMEGATE_BACKEND_PREPROCESS:-darknet}"
    --threshold "${FRAMEGATE_BACKEND_THRESHOLD:-0.5}" --nms "${FRAMEGATE_BACKEND_NMS:-0.45}"
)
if [ -n "${FRAMEGATE_BACKEND_INPUT_SIZE:-}" ] && [ "$FRAMEGATE_BACKEND_INPUT_SIZE" != 0 ]; then
    args+=(--input-size "$FRAMEGATE_BACKEND_INPUT_SIZE")
fi
# shellcheck disable=SC2086 # split on purpose
exec framegate-backend "${args[@]}" ${FRAMEGATE_BACKEND_ARGS:-}
