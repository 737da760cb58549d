"""Helpers of the tests that run framegate's image on a real Docker engine
(test_compose_up.py, test_compose_backends.py): the engine (the running one, or a dockerd we
start and stop by PID), the base image, the build arguments, docker-compose for one project,
the gateway's HTTP API on the published port, and what a project leaves behind."""
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import fg

SRC = os.path.abspath(fg.SRC)
IMAGE = "framegate:local"
SKIP = 77


def skip(why):
    fg.log(f"SKIP: {why}")
    sys.exit(SKIP)


def run(cmd, timeout=120, env=None, check=False, quiet=False):
    """Runs cmd in the checkout; logs its output when it fails (unless quiet)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=SRC)
    if (check and r.returncode != 0) or (not quiet and r.returncode != 0):
        fg.log(f"$ {' '.join(cmd)} -> {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {cmd[1]} failed ({r.returncode})")
    return r


def engine_up():
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class Engine:
    """The Docker engine for one test: the one that answers, else a dockerd started here (as
    root) and stopped by stop(), by its PID. Skips the test (exit 77) where none can run, and
    in the sanitizer pass (the image holds Release binaries, not the ASan build)."""

    def __init__(self):
        self.proc = None
        self.log = None
        if fg.SANITIZE:
            skip("the sanitizer pass: the image holds Release binaries; the plain pass runs this")
        for tool in ("docker", "dockerd", "docker-compose"):
            if shutil.which(tool) is None:
                fg.check(False, f"{tool} is installed (scripts/setup.sh installs docker.io, "
                                "docker-compose)")
                fg.finish()
        if engine_up():
            return
        if os.geteuid() != 0:
            skip("no Docker engine answers and starting dockerd needs root")
        self.log = tempfile.NamedTemporaryFile(prefix="fgt-dockerd-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(["dockerd"], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=fg._die_with_parent)
        fg.log(f"started dockerd (pid {self.proc.pid})")
        end = time.time() + 60
        while time.time() < end and self.proc.poll() is None and not engine_up():
            time.sleep(0.5)
        if not engine_up():
            tail = open(self.log.name, errors="replace").read()[-2000:]
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.unlink(self.log.name)
            skip(f"dockerd cannot run here:\n{tail}")

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        fg.log(f"stopped dockerd (pid {self.proc.pid}, exit {self.proc.returncode})")
        os.unlink(self.log.name)


def extra_cas():
    """The CAs this machine trusts beyond Debian's (a TLS-inspecting proxy's): the builder's
    npm needs them; PEM text for the NODE_EXTRA_CA_CERTS build argument ('' if none)."""
    pem = re.compile(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
    known = set()
    for f in glob.glob(os.path.join("/usr/share/ca-certificates", "**", "*.crt"), recursive=True):
        known.update(c.replace("\n", "") for c in pem.findall(open(f).read()))
    try:
        bundle = open("/etc/ssl/certs/ca-certificates.crt").read()
    except OSError:
        return ""
    return "\n".join(c for c in pem.findall(bundle) if c.replace("\n", "") not in known)


def base_image():
    """debian:bookworm-slim if the engine has it, else framegate/bookworm-base, made by
    scripts/docker/base-image.sh when missing. Raises if it cannot be made."""
    base = "debian:bookworm-slim"
    if run(["docker", "image", "inspect", base], quiet=True).returncode == 0:
        return base
    base = "framegate/bookworm-base"
    if run(["docker", "image", "inspect", base], quiet=True).returncode == 0:
        return base
    t0 = time.time()
    r = run([os.path.join(SRC, "scripts/docker/base-image.sh"), base], timeout=900)
    fg.log(r.stdout.strip())
    if not fg.check(r.returncode == 0, f"{base} is there (scripts/docker/base-image.sh, "
                                       f"{time.time() - t0:.0f} s)"):
        raise RuntimeError("no base image")
    return base


def compose_env(project, port, **settings):
    """The environment docker-compose runs in: none of the caller's FRAMEGATE_* settings,
    the classic builder (docker-compose 1.29's own; one layer cache and the step-by-step
    output test_compose_up reads), the host port, the build CAs, and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEGATE_")}
    env.update({"DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0",
                "FRAMEGATE_PORT": str(port), "FRAMEGATE_BUILD_CA": extra_cas(),
                "COMPOSE_PROJECT_NAME": project})
    env.update(settings)
    return env


def compose_cmd(project, *files):
    cmd = ["docker-compose"]
    for f in files or ("docker-compose.yml",):
        cmd += ["-f", os.path.join(SRC, f)]
    return cmd + ["-p", project]


def remote(port):
    """fg.Gateway's HTTP helpers, pointed at a container's published port."""

    class Remote:
        conn = fg.Gateway.conn
        request = fg.Gateway.request
        detect = fg.Gateway.detect
        json = fg.Gateway.json
        backends = fg.Gateway.backends

    r = Remote()
    r.port = port
    return r


def wait_healthy(cid_of, timeout=240):
    """Waits until the container cid_of() names is healthy; False after timeout."""
    end = time.time() + timeout
    state = ""
    while time.time() < end:
        cid = cid_of()
        if cid:
            r = run(["docker", "inspect", "-f", "{{.State.Health.Status}} {{.State.Status}}", cid],
                    quiet=True)
            state = r.stdout.strip()
            if state.startswith("healthy"):
                return True
        time.sleep(0.5)
    fg.log(f"not healthy after {timeout} s: {state}")
    return False


def leftovers(project):
    """{kind: [ids]} of the containers, volumes and networks labelled with the project."""
    label = f"label=com.docker.compose.project={project}"
    out = {}
    for kind, cmd in (("containers", ["docker", "ps", "-a", "-q"]),
                      ("volumes", ["docker", "volume", "ls", "-q"]),
                      ("networks", ["docker", "network", "ls", "-q"])):
        ids = run(cmd + ["--filter", label], quiet=True).stdout.split()
        if ids:
            out[kind] = ids
    return out


def remove_project(project):
    """Removes whatever the project left (after a failed test): containers, volumes, networks."""
    left = leftovers(project)
    if left.get("containers"):
        run(["docker", "rm", "-f", "-v"] + left["containers"], quiet=True)
    if left.get("volumes"):
        run(["docker", "volume", "rm", "-f"] + left["volumes"], quiet=True)
    if left.get("networks"):
        run(["docker", "network", "rm"] + left["networks"], quiet=True)
