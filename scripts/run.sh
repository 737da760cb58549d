#!/usr/bin/env bash
# Sets up (Debian packages), builds, prepares the default model and starts framegate with its
# embedded defaults on 0.0.0.0:8080. Arguments are passed to framegate (e.g. --config FILE,
# --listen 127.0.0.1:9000, --set max_backends=4).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -eq 0 ]; then
    scripts/setup.sh
else
    sudo scripts/setup.sh
fi
scripts/build.sh
scripts/models.sh build
exec build/bin/framegate "$@"
