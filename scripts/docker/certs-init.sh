#!/usr/bin/env bash
# First-start step of the compose backends profile (docker-compose.backends.yml's `certs`
# service, in the framegate image): the CA and the certificates for mutual TLS between the
# gateway and the backend containers, made once into named volumes and reused after.
#   FRAMEGATE_CA_DIR   (/var/lib/framegate/ca, volume `ca`): the CA; ca.key never leaves it
#                      (only this service mounts it)
#   FRAMEGATE_PKI_DIR  (/etc/framegate/pki, volume `pki`, read-only in the others): ca.crt,
#                      gateway.crt/.key, backend.crt/.key
#   FRAMEGATE_NETWORK  the compose network's name; FRAMEGATE_CERT_DAYS validity (825)
# The gateway's certificate names `gateway` (the service the backends --join). All backend
# containers share one certificate naming `*.NETWORK`: each advertises
# tls+tcp://HOSTNAME.NETWORK:PORT (its hostname is its container id, which Docker's DNS
# resolves on the network, also as ID.NETWORK), and mbedTLS matches `*.` to one label. It is
# issued again when the network was renamed or it expires within a week.
set -euo pipefail

ca=${FRAMEGATE_CA_DIR:-/var/lib/framegate/ca}
pki=${FRAMEGATE_PKI_DIR:-/etc/framegate/pki}
net=${FRAMEGATE_NETWORK:?FRAMEGATE_NETWORK: the compose network name}
days=${FRAMEGATE_CERT_DAYS:-825}
certs=/usr/local/share/framegate/certs.sh

if [ ! -f "$ca/ca.key" ]; then
    "$certs" init "$ca" --days "$days"
fi
names=$(openssl x509 -in "$ca/backend.crt" -noout -ext subjectAltName 2>/dev/null || true)
if ! tr ', ' '\n\n' <<<"$names" | grep -qxF "DNS:*.$net" ||
    ! openssl x509 -in "$ca/backend.crt" -noout -checkend $((7 * 86400)) >/dev/null; then
    "$certs" issue "$ca" backend --dns "*.$net" --days "$days"
fi
if ! openssl x509 -in "$ca/gateway.crt" -noout -checkend $((7 * 86400)) >/dev/null; then
    # certs.sh never overwrites a CA: a new one takes `docker-compose down -v` (both volumes).
    echo "framegate-certs-init: WARNING: $ca/gateway.crt expires within a week;" \
        "docker-compose down -v makes a new CA on the next up" >&2
fi
install -m 644 "$ca/ca.crt" "$ca/gateway.crt" "$ca/backend.crt" "$pki/"
install -m 600 "$ca/gateway.key" "$ca/backend.key" "$pki/"
echo "framegate-certs-init: $pki: $(cd "$pki" && echo *); backends: *.$net"
