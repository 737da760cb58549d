#!/usr/bin/env python3
"""docker-compose.yml is valid for Debian's docker-compose (which needs no engine for
`config`) and describes the gateway on port 8080 built from scripts/docker/Dockerfile."""
# ctest-timeout: 60
import os
import shutil
import subprocess

import fg

compose = os.path.join(fg.SRC, "docker-compose.yml")
exe = shutil.which("docker-compose")
fg.check(exe is not None, "docker-compose is installed (scripts/setup.sh)")
if exe:
    r = subprocess.run([exe, "-f", compose, "config"], capture_output=True, text=True,
                       timeout=30)
    fg.check(r.returncode == 0, f"docker-compose config succeeds {r.stderr[:300]}")
    out = r.stdout
    fg.check("gateway:" in out, "a gateway service")
    fg.check("8080" in out and "published" in out or "8080:8080" in out, "port 8080 published")
    fg.check("scripts/docker/Dockerfile" in out, "built from scripts/docker/Dockerfile")
    fg.check("FRAMEGATE_MAX_BACKENDS" in out, "configured through FRAMEGATE_ variables")
dockerfile = open(os.path.join(fg.SRC, "scripts/docker/Dockerfile")).read()
fg.check(dockerfile.startswith("#") and "FROM debian:bookworm-slim" in dockerfile,
         "Dockerfile on debian:bookworm-slim")
fg.check("setup.sh" in dockerfile, "the image installs packages with scripts/setup.sh")
fg.finish()
