#!/usr/bin/env python3
"""docker-compose.yml is valid for Debian's docker-compose 1.29 (`config` needs no engine)
and describes the gateway on port 8080, built from scripts/docker/Dockerfile, configured by
the mounted config/framegate.conf plus FRAMEGATE_ variables, health-checked on /readyz.
This test needs no engine: the Dockerfile is checked statically, and the configuration the
container would get is loaded by the real gateway binary (--print-config). The image is built
and run for real by test_compose_up.py.
Stdlib only; prints every check; exits non-zero on any failure."""
# ctest-timeout: 60
import os
import re
import shutil
import subprocess
import sys

SRC = os.path.abspath(os.environ.get("FG_SOURCE_DIR")
                      or os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FG_BIN_DIR") or os.path.join(SRC, "build", "bin")
failures = []


def check(cond, what):
    print(("ok   - " if cond else "FAIL - ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def block(text, header, indent):
    """The lines of the YAML mapping `header:` at `indent` spaces, up to its next sibling."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line == " " * indent + header + ":":
            out = []
            for nxt in lines[i + 1:]:
                ind = len(nxt) - len(nxt.lstrip())
                # A block sequence may sit at its key's own indent ("ports:\n- ...").
                if nxt.strip() and (ind < indent or ind == indent and not nxt.lstrip()
                                    .startswith("- ")):
                    break
                out.append(nxt)
            return "\n".join(out)
    return ""


compose = os.path.join(SRC, "docker-compose.yml")
exe = shutil.which("docker-compose")
env = {}
if check(exe is not None, "docker-compose is installed (scripts/setup.sh)"):
    # A clean environment: the defaults in the file, not whatever the caller exported.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEGATE_")}
    r = subprocess.run([exe, "-f", compose, "config"], capture_output=True, text=True,
                       timeout=30, cwd="/", env=clean)
    check(r.returncode == 0, f"`docker-compose config` succeeds {r.stderr.strip()[:300]}")
    out = r.stdout
    r2 = subprocess.run([exe, "-f", compose, "config", "--services"], capture_output=True,
                        text=True, timeout=30, cwd="/", env=clean)
    check(r2.returncode == 0 and "gateway" in r2.stdout.split(),
          f"services: {r2.stdout.split()} include gateway")
    gw = block(out, "gateway", 2)
    check(gw != "", "the gateway service is in the resolved configuration")
    ports = block(gw, "ports", 4)
    check(re.search(r"published: 8080\s+target: 8080", ports) is not None
          or "8080:8080" in ports, "gateway publishes port 8080 -> 8080")
    build = block(gw, "build", 4)
    check("dockerfile: scripts/docker/Dockerfile" in build
          and f"context: {SRC}" in build, "built from scripts/docker/Dockerfile, repo as context")
    check(re.search(r"^    image: framegate:local$", gw, re.M) is not None,
          "a local image name (built, never pulled)")
    check(f"{SRC}/config/framegate.conf:/etc/framegate/framegate.conf:ro" in gw,
          "config/framegate.conf mounted read-only at /etc/framegate/framegate.conf")
    health = block(gw, "healthcheck", 4)
    check("/readyz" in health and "8080" in health, "healthcheck probes /readyz on 8080")
    for line in block(gw, "environment", 4).splitlines():
        m = re.match(r"\s+(FRAMEGATE_[A-Z_]+): '?([^']*)'?$", line)
        if m:
            env[m.group(1)] = m.group(2)
    check("FRAMEGATE_MAX_BACKENDS" in env and "FRAMEGATE_LISTEN" in env,
          f"configured through FRAMEGATE_ variables: {sorted(env)}")

# The Dockerfile cannot be built here; check what it promises.
dockerfile = open(os.path.join(SRC, "scripts/docker/Dockerfile")).read()
steps = [l for l in dockerfile.splitlines() if l and not l.startswith("#")]
check(steps[0] == "ARG BASE=debian:bookworm-slim",
      "Dockerfile is based on debian:bookworm-slim unless BASE says otherwise")
froms = [l.split()[1:] for l in steps if l.startswith("FROM ")]
check(froms == [["${BASE}", "AS", "builder"], ["${BASE}", "AS", "runtime"]],
      f"two stages from BASE: builder, then runtime (the image) {froms}")
check("COPY scripts/setup.sh" in dockerfile and "setup.sh --image" in dockerfile
      and "setup.sh --runtime" in dockerfile,
      "both stages install their packages with scripts/setup.sh (--image, --runtime)")
runtime = "\n".join(steps[next((i for i, l in enumerate(steps) if l.endswith("AS runtime")),
                                 0):])
check("NODE_EXTRA_CA_CERTS" not in runtime and "npm" not in runtime,
      "the build CA and npm stay in the builder stage")
check("BUILD_TYPE=Release" in dockerfile, "built with cmake in Release")
check("scripts/models.sh" in dockerfile, "default weights generated by scripts/models.sh")
users = [l.split()[1] for l in steps if l.startswith("USER ")]
check(users != [] and users[-1] not in ("root", "0"), f"runs as a non-root user {users}")
check('ENTRYPOINT ["framegate", "--config", "/etc/framegate/framegate.conf"]' in dockerfile,
      "runs framegate --config /etc/framegate/framegate.conf")
for l in steps:
    if l.startswith("COPY ") and not l.startswith("COPY --from="):
        srcs = l.split()[1:-1]
        check(all(os.path.exists(os.path.join(SRC, s)) for s in srcs),
              f"COPY sources exist: {srcs}")
ignore = open(os.path.join(SRC, ".dockerignore")).read().split()
check("build/" in ignore and "build-*/" in ignore and ".git/" in ignore,
      ".dockerignore keeps build dirs and .git out of the context")

# What the container's gateway would run with: the mounted file plus compose's variables.
framegate = os.path.join(BIN, "framegate")
if check(os.access(framegate, os.X_OK), f"{framegate} is built") and env:
    run_env = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/framegate",
               "FRAMEGATE_CACHE": "/var/lib/framegate/cache", **env}
    r = subprocess.run([framegate, "--config", os.path.join(SRC, "config/framegate.conf"),
                        "--print-config"], capture_output=True, text=True, timeout=30,
                       env=run_env)
    check(r.returncode == 0, f"the gateway accepts that configuration {r.stderr.strip()[:300]}")
    # Top-level keys, then "[model NAME]" sections: their keys are read as model.NAME.KEY.
    eff, section = {}, ""
    for l in r.stdout.splitlines():
        if l.startswith("[model ") and l.endswith("]"):
            section = f"model.{l[7:-1]}."
        elif " = " in l and not l.startswith("#"):
            k, v = l.split(" = ", 1)
            eff[section + k] = v
    check(eff.get("listen") == "0.0.0.0:8080", f"it listens on 0.0.0.0:8080 ({eff.get('listen')})")
    check(eff.get("max_backends") == env.get("FRAMEGATE_MAX_BACKENDS"),
          f"max_backends comes from the environment ({eff.get('max_backends')})")
    check(eff.get("model.yolov3-tiny.weights")
          == '"/var/lib/framegate/cache/models/yolov3-tiny.weights"',
          f"weights resolve into the image's cache ({eff.get('model.yolov3-tiny.weights')})")
    check(eff.get("model.face.cfg") == '"/var/lib/framegate/cache/models/face-tiny.cfg"'
          and eff.get("default_model") == '"face"',
          f"the default model is face, in the image's cache ({eff.get('model.face.cfg')})")

# The backends profile (docker-compose.backends.yml on top): its services, volumes, and the
# gateway's configuration with it. test_compose_backends.py runs it for real.
overlay = os.path.join(SRC, "docker-compose.backends.yml")
be_env = {}
if exe is not None:
    r = subprocess.run([exe, "-f", compose, "-f", overlay, "config"], capture_output=True,
                       text=True, timeout=30, cwd="/", env=clean)
    check(r.returncode == 0, f"`config` with docker-compose.backends.yml succeeds "
                             f"{r.stderr.strip()[:300]}")
    out = r.stdout
    gwb, be, ce = (block(out, s, 2) for s in ("gateway", "backend", "certs"))
    check(gwb and be and ce, "services gateway, backend and certs")
    check(all(re.search(r"^    image: framegate:local$", s, re.M) for s in (be, ce))
          and all("dockerfile: scripts/docker/Dockerfile" in block(s, "build", 4)
                  for s in (be, ce)),
          "backend and certs run the gateway's image, built from the same Dockerfile")
    check(re.search(r"certs:\s+condition: service_completed_successfully",
                    block(gwb, "depends_on", 4)) is not None,
          "the gateway starts once the certificates are made")
    check("ca:/var/lib/framegate/ca" in ce and re.search(r"^\s+- ca:", gwb + be, re.M) is None,
          "the CA volume is mounted by the certs service only")
    check("pki:/etc/framegate/pki:ro" in gwb and "pki:/etc/framegate/pki:ro" in be,
          "gateway and backends mount the certificates read-only")
    check("restart: unless-stopped" in be and "init: true" in be and "ports:" not in be,
          "a backend container that dies is restarted; nothing of it published")
    check(re.search(r"^  default:\s+name: framegate$", block(out, "networks", 0), re.M)
          is not None, "the network is named (framegate): the backends' names end in it")
    check(re.search(r"^  ca: \{\}$", block(out, "volumes", 0), re.M) is not None
          and re.search(r"^  pki: \{\}$", block(out, "volumes", 0), re.M) is not None,
          "named volumes ca and pki")
    for line in block(gwb, "environment", 4).splitlines():
        m = re.match(r"\s+(FRAMEGATE_[A-Z_]+): '?([^']*)'?$", line)
        if m:
            be_env[m.group(1)] = m.group(2)
    benv = block(be, "environment", 4)
    check("FRAMEGATE_JOIN: tls+tcp://gateway:7700" in benv
          and "FRAMEGATE_NETWORK: framegate" in benv,
          "backends join tls+tcp://gateway:7700 on the network framegate")
for f in ("certs-init.sh", "backend-join.sh"):
    p = os.path.join(SRC, "scripts/docker", f)
    check(os.access(p, os.X_OK) and subprocess.run(["bash", "-n", p]).returncode == 0,
          f"scripts/docker/{f} is executable bash")
if check(os.access(framegate, os.X_OK), f"{framegate} is built") and be_env:
    # The gateway checks the TLS files at start, not when printing: paths are enough here.
    run_env = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/framegate",
               "FRAMEGATE_CACHE": "/var/lib/framegate/cache", **be_env}
    r = subprocess.run([framegate, "--config", os.path.join(SRC, "config/framegate.conf"),
                        "--print-config"], capture_output=True, text=True, timeout=30,
                       env=run_env)
    check(r.returncode == 0, "the gateway accepts the profile's configuration "
                             f"{r.stderr.strip()[:300]}")
    check('join_listen = "tls+tcp://0.0.0.0:7700"' in r.stdout,
          "it listens for registrations on tls+tcp://0.0.0.0:7700")
    face = r.stdout[r.stdout.find("[model face]"):]
    face = face[:face.find("\n[model ", 1) if "\n[model " in face[1:] else len(face)]
    check(re.search(r'^provider = "?registered"?', face, re.M) is not None,
          "the face model takes registered backends")

if failures:
    print(f"{len(failures)} check(s) failed: {failures}")
    sys.exit(1)
print("all checks passed")
