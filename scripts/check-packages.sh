#!/usr/bin/env bash
# Checks that scripts/setup.sh installs every Debian package whose files the project reads:
# each absolute /usr path named in a tracked file (tests, scripts, benches, build files, docs,
# sources) must exist, and the package that ships it must be one setup.sh names, one of their
# dependencies (recursively), or one a fresh machine already has
# (scripts/fresh-machine-packages.txt). Run after setup.sh, from anywhere; needs only the
# repository and dpkg/apt-cache. Prints each problem and exits 1; silent and 0 when all is well.
# Usage: check-packages.sh [SETUP_SCRIPT]  (default scripts/setup.sh; another one lets a test
# check that a package removed from the list is caught)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
setup=${1:-$repo/scripts/setup.sh}
fresh=$repo/scripts/fresh-machine-packages.txt

# Paths the project reads, each with the first file naming it. Generated output
# (bench/results), the package list itself and base-image.sh (paths inside the image it makes)
# are not the project reading anything.
refs=$(cd "$repo" && git ls-files -z -- . ':!bench/results' ':!scripts/fresh-machine-packages.txt' ':!scripts/docker/base-image.sh' |
    xargs -0 -r grep -oHE '/usr/(lib|share|include|bin|sbin|libexec)/[A-Za-z0-9_.+/-]+' 2>/dev/null |
    sed 's/[.,;:)]*$//' | sort -t: -k2,2 -u) || true
[ -n "$refs" ] || exit 0

fail=0
existing=()
declare -A first_ref=()
while IFS=: read -r file path; do
    first_ref[$path]=$file
    if [ -e "$path" ]; then
        existing+=("$path")
    else
        # After setup a path the project reads must be there; no package on this machine
        # ships it, so nothing can say which one setup.sh forgot: apt-file search PATH does.
        echo "check-packages: $path (named in $file) does not exist after setup: add the package that ships it to scripts/setup.sh"
        fail=1
    fi
done <<<"$refs"

# Packages named in setup.sh (any word that is an installed package name; conditional ones
# such as nodejs or --bench's libopencv-dev count when installed) and their dependencies.
named=$(grep -v '^\s*#' "$setup" | sed 's/#.*//' | grep -ohE '\b[a-z0-9][a-z0-9.+-]+\b' | sort -u |
    xargs -r dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null |
    awk '$1 == "ii" {print $2}' | sort -u) || true
closure=$({
    echo "$named"
    # shellcheck disable=SC2086
    [ -z "$named" ] || apt-cache depends --recurse --installed --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances $named 2>/dev/null |
        grep -vE '^\s|<'
} | sed 's/:.*//' | sort -u)
base=$(grep -v '^#' "$fresh" 2>/dev/null || true)

if [ ${#existing[@]} -gt 0 ]; then
    # dpkg -S prints "pkg1, pkg2: /path" (several owners for shared directories).
    owned=$(dpkg -S "${existing[@]}" 2>/dev/null | grep -v '^diversion') || true
    declare -A seen=()
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        path=${line#*: }
        seen[$path]=1
        owners=$(echo "${line%%: *}" | tr ',' '\n' | sed 's/^ *//; s/:.*//')
        ok=0
        for o in $owners; do
            if grep -qxF "$o" <<<"$closure" || grep -qxF "$o" <<<"$base"; then ok=1; fi
        done
        if [ $ok = 0 ]; then
            echo "check-packages: $(echo "$owners" | head -1) (ships $path, named in ${first_ref[$path]:-?}) is not installed by scripts/setup.sh nor on a fresh machine"
            fail=1
        fi
    done <<<"$owned"
    # A path no package owns (made by hand): a fresh machine will not have it.
    for p in "${existing[@]}"; do
        if [ -z "${seen[$p]:-}" ]; then
            echo "check-packages: $p (named in ${first_ref[$p]}) belongs to no Debian package: a fresh machine will not have it"
            fail=1
        fi
    done
fi
exit $fail
