#!/usr/bin/env bash
# Makes a local Debian 12 base image for scripts/docker/Dockerfile on a machine that reaches
# the Debian mirror but no image registry (CI, these test machines): debootstrap's minbase
# system, trimmed like debian:bookworm-slim (no docs, man pages, locales, apt lists), and
# `docker import`ed. Does nothing when `docker image inspect` already finds the image.
# Build with it: docker build --build-arg BASE=framegate/bookworm-base ..., or
# FRAMEGATE_BASE=framegate/bookworm-base docker-compose up --build.
# Usage (root; debootstrap and docker installed): base-image.sh [IMAGE]
#   IMAGE   default framegate/bookworm-base
#   FG_DEBIAN_MIRROR   default http://deb.debian.org/debian
set -euo pipefail
image=${1:-framegate/bookworm-base}
mirror=${FG_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base-image.sh: $image is there"
    exit 0
fi
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "base-image.sh: $tool is not installed (scripts/setup.sh)" >&2; exit 1; }
done

root=$(mktemp -d /var/tmp/fg-bookworm.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# What debian:bookworm-slim has: the same suites, and dpkg/apt told to keep the image small.
cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::GzipIndexes "true"; Acquire::CompressionTypes::Order:: "gz";' \
    >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
echo 'APT::Install-Recommends "false";' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$root"/usr/share/{man,info,locale,groff,lintian}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log \
    "$root"/etc/hostname "$root"/etc/resolv.conf

tar -C "$root" --numeric-owner -c . |
    docker import -c 'CMD ["bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -m "debootstrap --variant=minbase bookworm ($mirror)" - "$image" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "base-image.sh: made $image ($((size / 1000000)) MB) in $(($(date +%s) - start)) s"
