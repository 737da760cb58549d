#!/usr/bin/env bash
# Certificates for framegate's mutual TLS between the gateway and its backends, made with the
# openssl command-line tool (no other dependency).
#
#   certs.sh init DIR [--ip ADDR]... [--dns NAME]... [--days N]
#       A CA (DIR/ca.crt, DIR/ca.key) and the gateway's certificate (DIR/gateway.crt, .key).
#       Its names are "gateway", every --dns and every --ip: backends that register
#       (framegate-backend --join tls+tcp://HOST:PORT) check HOST against them.
#   certs.sh issue DIR NAME [--ip ADDR]... [--dns NAME]... [--days N]
#       A backend certificate DIR/NAME.crt + DIR/NAME.key signed by DIR's CA.
#       Its names (subjectAltName) are NAME, every --dns and every --ip. The gateway checks the
#       host of the address it dials (tls+tcp://HOST:PORT) against these names.
#   certs.sh issue DIR NAME --start YYYYMMDDHHMMSSZ --end YYYYMMDDHHMMSSZ
#       Explicit validity (tests use it to make an already expired certificate).
#   certs.sh show DIR/NAME.crt
#       Subject, names, key usages and validity of a certificate.
#
# Key usages: a backend certificate is a TLS server (serverAuth: the gateway dials it) and,
# for `framegate-backend --join`, a TLS client of the gateway (clientAuth). The gateway's
# certificate is a TLS client of every backend (clientAuth) and the server of the join
# listener (serverAuth). mbedTLS (NNG's TLS engine on Debian) refuses a peer whose extended
# key usage does not allow its role.
#
# mbedTLS 2.28 matches the name it dials only against DNS names and the common name, never
# against IP address entries, so every --ip is written both as an IP entry (for other TLS
# stacks) and as a DNS entry holding the same text.
#
# Keys are EC P-256, unencrypted (chmod 600): a backend started by systemd has no one to type
# a pass phrase. Keep DIR/ca.key off the backend hosts; each backend host needs only ca.crt,
# its NAME.crt and NAME.key.
set -euo pipefail

die() {
    echo "certs.sh: $*" >&2
    exit 2
}

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
}

# Writes the openssl ca configuration once per DIR: a serial file and an index make every
# certificate's serial unique, and `openssl ca` is what accepts explicit start/end dates.
ca_conf() {
    local dir=$1
    [ -f "$dir/ca.cnf" ] && return 0
    : >"$dir/index.txt"
    echo 1000 >"$dir/serial"
    cat >"$dir/ca.cnf" <<EOF
[ ca ]
default_ca = fg_ca
[ fg_ca ]
dir = .
database = \$dir/index.txt
serial = \$dir/serial
new_certs_dir = \$dir/issued
certificate = \$dir/ca.crt
private_key = \$dir/ca.key
default_md = sha256
policy = fg_policy
unique_subject = no
copy_extensions = none
email_in_dn = no
[ fg_policy ]
commonName = supplied
organizationName = optional
[ req ]
distinguished_name = req_dn
prompt = no
[ req_dn ]
CN = framegate
EOF
    mkdir -p "$dir/issued"
}

# new_key PATH: an EC P-256 private key, readable by its owner only.
new_key() {
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null)
}

# sign DIR NAME EXTFILE DAYS START END: DIR/NAME.csr -> DIR/NAME.crt with the extensions in
# EXTFILE (section "ext"), valid DAYS days from now or from START to END when both are set.
sign() {
    local dir=$1 name=$2 ext=$3 days=$4 start=$5 end=$6
    local when=(-days "$days")
    if [ -n "$start" ] || [ -n "$end" ]; then
        [ -n "$start" ] && [ -n "$end" ] || die "--start and --end go together"
        when=(-startdate "$start" -enddate "$end")
    fi
    (cd "$dir" && openssl ca -batch -notext -config ca.cnf -extfile "$ext" -extensions ext \
        "${when[@]}" -in "$name.csr" -out "$name.crt" 2>ca.log) ||
        { cat "$dir/ca.log" >&2; die "signing $name failed"; }
    rm -f "$dir/$name.csr" "$dir/ca.log"
}

cmd_init() {
    local dir="" days=825 san="DNS:gateway"
    while [ $# -gt 0 ]; do
        case $1 in
        --ip) san+=",IP:${2:?--ip needs a value},DNS:$2"; shift 2 ;;
        --dns) san+=",DNS:${2:?--dns needs a value}"; shift 2 ;;
        --days) days=${2:?--days needs a value}; shift 2 ;;
        -*) die "init: unknown option $1" ;;
        *) [ -z "$dir" ] || die "init: one DIR"; dir=$1; shift ;;
        esac
    done
    [ -n "$dir" ] || die "init: DIR is required"
    [ ! -e "$dir/ca.key" ] || die "$dir/ca.key exists: not overwriting a CA"
    mkdir -p "$dir"
    ca_conf "$dir"
    new_key "$dir/ca.key"
    openssl req -new -x509 -key "$dir/ca.key" -sha256 -days 3650 -subj "/O=framegate/CN=framegate CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" -out "$dir/ca.crt"
    new_key "$dir/gateway.key"
    openssl req -new -key "$dir/gateway.key" -subj "/O=framegate/CN=gateway" -out "$dir/gateway.csr"
    cat >"$dir/gateway.ext" <<EOF
[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth,serverAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    sign "$dir" gateway "$dir/gateway.ext" "$days" "" ""
    rm -f "$dir/gateway.ext"
    echo "certs.sh: CA $dir/ca.crt, gateway $dir/gateway.crt (+ .key), names $san"
}

cmd_issue() {
    local dir="" name="" days=825 start="" end="" sans=()
    while [ $# -gt 0 ]; do
        case $1 in
        --ip) sans+=("IP:${2:?--ip needs a value}" "DNS:$2"); shift 2 ;;
        --dns) sans+=("DNS:${2:?--dns needs a value}"); shift 2 ;;
        --days) days=${2:?--days needs a value}; shift 2 ;;
        --start) start=${2:?--start needs a value}; shift 2 ;;
        --end) end=${2:?--end needs a value}; shift 2 ;;
        -*) die "issue: unknown option $1" ;;
        *)
            if [ -z "$dir" ]; then dir=$1
            elif [ -z "$name" ]; then name=$1
            else die "issue: unexpected argument $1"; fi
            shift ;;
        esac
    done
    [ -n "$dir" ] && [ -n "$name" ] || die "issue: DIR and NAME are required"
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "issue: NAME must be [A-Za-z0-9._-]"
    [ "$name" != ca ] && [ "$name" != gateway ] || die "issue: '$name' is reserved"
    [ -f "$dir/ca.key" ] || die "$dir/ca.key not found: run 'certs.sh init $dir' first"
    ca_conf "$dir"
    local san="DNS:$name"
    for s in "${sans[@]}"; do san+=",$s"; done
    new_key "$dir/$name.key"
    openssl req -new -key "$dir/$name.key" -subj "/O=framegate/CN=$name" -out "$dir/$name.csr"
    cat >"$dir/$name.ext" <<EOF
[ ext ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = $san
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    sign "$dir" "$name" "$dir/$name.ext" "$days" "$start" "$end"
    rm -f "$dir/$name.ext"
    echo "certs.sh: backend $dir/$name.crt (+ .key), names $san"
}

cmd_show() {
    [ $# -eq 1 ] || die "show: one certificate"
    openssl x509 -in "$1" -noout -subject -issuer -dates \
        -ext subjectAltName,keyUsage,extendedKeyUsage,basicConstraints
}

command -v openssl >/dev/null || die "openssl not found (Debian: apt-get install openssl)"
case ${1:-} in
init) shift; cmd_init "$@" ;;
issue) shift; cmd_issue "$@" ;;
show) shift; cmd_show "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
