#!/usr/bin/env python3
"""`docker-compose up`, for real, against a real Docker engine: builds the image from this
checkout (scripts/docker/Dockerfile), checks its size and contents, starts it, waits for
healthy, posts dog.jpg and astronaut.png (the astronaut's face), scales to 4 backends under
load (FRAMEGATE_MAX_BACKENDS=4), SIGKILLs a backend inside the container and loses no frame,
and `docker-compose down`s within the grace period with no container left.
Also rebuilds from a copy of the checkout with one source file changed: the layers before the
compile step must come from the cache (printed: that rebuild's time).
Needs root and a Docker engine (scripts/setup.sh installs docker.io and debootstrap): starts
`dockerd` when none answers, and stops it after, by PID. With no registry reachable, the base
image is made by scripts/docker/base-image.sh. The builder layers stay in the engine's cache,
so the next run on the same machine builds in seconds.
Skipped (exit 77) only when no engine can run here (not root and none running, or dockerd
cannot start), and in the sanitizer pass (the image holds Release binaries, not the ASan build).
Prints: image size and layers, cold/cached build time, time from `up` to healthy."""
# ctest-timeout: 2400
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fg  # noqa: E402
import dockerfg as dfg  # noqa: E402
from dockerfg import IMAGE, SRC, run  # noqa: E402

SIZE_LIMIT = 250 * 1000 * 1000  # bytes, as `docker images` counts MB
PROJECT = f"fgtest{os.getpid()}"
GRACE = 30  # docker-compose.yml's stop_grace_period

engine = dfg.Engine()  # skips (77) where no engine can run


def built_layers(output):
    """(steps, steps from the cache, ids of the images this build made) from classic
    `docker build` output."""
    steps = cached = 0
    made = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"Step \d+/\d+ :", line):
            steps += 1
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if "Using cache" in nxt:
                cached += 1
                continue
            for later in lines[i + 1:]:
                if re.match(r"Step \d+/\d+ :", later):
                    break
                m = re.match(r" ---> ([0-9a-f]{12})$", later)
                if m:
                    made.append(m.group(1))
    return steps, cached, made


port = fg.free_port()
env = dfg.compose_env(PROJECT, port)
compose = dfg.compose_cmd(PROJECT)
gw = dfg.remote(port)


def container():
    r = run(compose + ["ps", "-q", "gateway"], env=env, quiet=True)
    return r.stdout.strip()


def wait_healthy(timeout=240):
    return dfg.wait_healthy(container, timeout)


def gateway_logs():
    return run(compose + ["logs", "--no-color", "gateway"], env=env, quiet=True).stdout


def project_containers():
    return dfg.leftovers(PROJECT).get("containers", [])


up = False
tmp = None
try:
    # ---- base image: debian:bookworm-slim if the engine has it, else a local one ----
    base = dfg.base_image()
    env["FRAMEGATE_BASE"] = base
    fg.log(f"base image: {base}; extra CAs for npm: {env['FRAMEGATE_BUILD_CA'].count('BEGIN')}")

    # ---- build (cold on a new machine, cached after) ----
    t0 = time.time()
    r = run(compose + ["build"], env=env, timeout=1800)
    build_s = time.time() - t0
    steps, cached, _ = built_layers(r.stdout)
    kind = "cached" if cached == steps else "cold" if cached <= 2 else "partly cached"
    fg.log(f"BUILD {kind}: {build_s:.1f} s ({cached}/{steps} steps from the cache)")
    if not fg.check(r.returncode == 0, "docker-compose build succeeds"):
        raise RuntimeError("build failed")

    # ---- the image: size, contents, user ----
    info = json.loads(run(["docker", "image", "inspect", IMAGE], check=True).stdout)[0]
    size = info["Size"]
    fg.log(f"IMAGE {IMAGE}: {size} bytes ({size / 1e6:.1f} MB)")
    hist = run(["docker", "history", "--no-trunc", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE],
               check=True).stdout
    for line in hist.splitlines():
        sz, by = line.split("\t", 1)
        if sz not in ("0B",):
            step = re.sub(r"^/bin/sh -c (#\(nop\) )?", "", by)[:110]
            fg.log(f"  {sz:>9}  {step}")
    fg.check(size <= SIZE_LIMIT, f"runtime image {size / 1e6:.1f} MB <= {SIZE_LIMIT / 1e6:.0f} MB")
    fg.check(info["Config"].get("User") not in ("", "root", "0"),
             f"runs as a non-root user ({info['Config'].get('User')!r})")
    r = run(["docker", "run", "--rm", "--entrypoint", "bash", IMAGE, "-c",
             "command -v cc gcc node npm cmake curl apt-get; true"], timeout=60)
    # apt-get answers: the probe itself works (an empty answer would prove nothing).
    fg.check([os.path.basename(x) for x in r.stdout.split()] == ["apt-get"],
             f"no compiler, node, npm, cmake or curl in the runtime image ({r.stdout.split()})")
    # scripts/setup.sh --runtime's list is what the binaries load: nothing missing, and every
    # package in it owns a library they load (openssl: the certs of the backends profile).
    r = run(["docker", "run", "--rm", "--entrypoint", "bash", IMAGE, "-c",
             "libs=$(ldd /usr/local/bin/framegate /usr/local/bin/framegate-backend);"
             " echo \"$libs\" | grep 'not found';"
             " echo \"$libs\" | awk '$2 == \"=>\" && $3 ~ /^\\// {print $3}' | xargs -r readlink -f"
             " | sort -u | xargs -r dpkg -S 2>/dev/null | cut -d: -f1 | sort -u | sed 's/^/pkg /';"
             " command -v openssl"], timeout=60)
    wanted = re.search(r"runtime_pkgs=\(([^)]*)\)", open(os.path.join(SRC, "scripts/setup.sh"))
                       .read()).group(1).split()
    owners = {ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("pkg ")}
    fg.log(f"runtime packages (setup.sh --runtime): {wanted}; owners of the loaded libraries: "
           f"{sorted(owners)}")
    fg.check("not found" not in r.stdout and len(owners) > 5,
             "every library the binaries load is in the image"
             + "".join(f"\n      {ln}" for ln in r.stdout.splitlines() if "not found" in ln))
    unused = [p for p in wanted if p not in owners and p != "openssl"]
    fg.check(not unused, f"every package of setup.sh --runtime is loaded (not: {unused})")
    fg.check(r.stdout.strip().endswith("/usr/bin/openssl"), "openssl is in the image")
    r = run(["docker", "run", "--rm", "--entrypoint", "bash", IMAGE, "-c",
             "ls /usr/lib/darknet /usr/local/lib /var/lib/framegate/cache/models;"
             " du -sh /usr/lib/x86_64-linux-gnu/openblas-pthread /var/lib/framegate/cache/models;"
             " grep -rlI 'BEGIN CERTIFICATE' /opt /tmp /var/lib/framegate /root 2>/dev/null; true"],
            timeout=60)
    fg.log("in the image:\n" + r.stdout)
    out = r.stdout.split()
    fg.check(all(f in out for f in ("face-tiny.weights", "face-tiny.cfg", "yolov3-tiny.weights",
                                    "libdarknet.so")), "the models and libdarknet.so are in the image")
    fg.check("BEGIN" not in r.stdout and not any(p.endswith(".pem") for p in out),
             "no build CA left in the runtime image")

    # ---- a rebuild after a source change: everything before the compile step is cached ----
    tmp = tempfile.mkdtemp(prefix="fgt-compose-")
    ctx = os.path.join(tmp, "src")
    files = subprocess.run(["git", "-C", SRC, "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        if rel and os.path.isfile(os.path.join(SRC, rel)):
            os.makedirs(os.path.dirname(os.path.join(ctx, rel)), exist_ok=True)
            shutil.copy2(os.path.join(SRC, rel), os.path.join(ctx, rel))
    # A change unique to this run (else the next run's rebuild would itself be a cache hit).
    with open(os.path.join(ctx, "gateway", "main.c"), "a") as f:
        f.write(f"\n/* test_compose_up rebuild {time.time()} */\n")
    t0 = time.time()
    r = run(["docker", "build", "-f", "scripts/docker/Dockerfile", "-t", f"{IMAGE}-rebuild",
             "--build-arg", f"BASE={base}",
             "--build-arg", f"NODE_EXTRA_CA_CERTS={env['FRAMEGATE_BUILD_CA']}", ctx],
            timeout=1200, quiet=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    rebuild_s = time.time() - t0
    r_out = r.stdout
    subprocess.run(["docker", "image", "rm", f"{IMAGE}-rebuild"], capture_output=True, timeout=60)
    steps, cached, made = built_layers(r_out)
    for iid in reversed(made):  # the layers only that rebuild made: children first
        subprocess.run(["docker", "image", "rm", iid], capture_output=True, timeout=60)
    fg.log(f"REBUILD after a source change: {rebuild_s:.1f} s ({cached}/{steps} steps from the "
           f"cache)" + ("" if rebuild_s < 60 else "  (over a minute: a loaded machine?)"))
    fg.check(r.returncode == 0,
             "the rebuild succeeds" + ("" if r.returncode == 0 else f" {r.stderr[-500:]}"))
    lines = r_out.splitlines()
    compile_step = next((i for i, l in enumerate(lines) if re.match(r"Step \d+/\d+ : COPY \. ", l)),
                        None)
    before = [l for l in lines[:compile_step or 0] if re.match(r"Step \d+/\d+ :", l)]
    before_cached = sum(1 for i, l in enumerate(lines[:compile_step or 0])
                        if re.match(r"Step \d+/\d+ :", l) and i + 1 < len(lines)
                        and ("Using cache" in lines[i + 1] or re.match(r"Step \d+/\d+ : (FROM|ARG)", l)))
    fg.check(compile_step is not None and before and before_cached == len(before),
             f"packages, npm and stubs layers came from the cache ({before_cached}/{len(before)})")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp = None

    # ---- up: healthy, then real frames ----
    t0 = time.time()
    r = run(compose + ["up", "--build", "-d"], env=env, timeout=600)
    up = True
    fg.check(r.returncode == 0, "docker-compose up --build -d succeeds")
    healthy = wait_healthy()
    fg.log(f"UP to healthy: {time.time() - t0:.1f} s")
    if not fg.check(healthy, "the gateway container becomes healthy"):
        raise RuntimeError("not healthy:\n" + gateway_logs()[-4000:])

    dog = fg.image("dog.jpg")
    st, _, body = gw.detect(dog)
    fg.check(st == 200 and json.loads(body).get("model") == "face", f"dog.jpg -> 200 from face ({st})")
    st, _, body = gw.detect(dog, "?model=yolov3-tiny")
    fg.check(st == 200 and json.loads(body).get("model") == "yolov3-tiny",
             f"dog.jpg -> 200 from yolov3-tiny ({st} {body[:200]})")
    png = open("/usr/lib/python3/dist-packages/skimage/data/astronaut.png", "rb").read()
    st, _, body = gw.detect(png, content_type="image/png")
    dets = json.loads(body).get("detections", []) if st == 200 else []
    fg.log(f"astronaut.png: {st} {[(d['label'], d['confidence'], d['box']) for d in dets]}")
    ok = len(dets) == 1 and dets[0]["label"] == "face"
    fg.check(ok, "astronaut.png -> one face")
    if ok:
        ref = os.path.join(fg.cache_dir(), "faceapi-ref", "reference.json")
        if os.path.exists(ref):  # face-api's own answer (scripts/models.sh)
            want = json.load(open(ref))["images"]["astronaut.png"]["416"][0]
        else:
            want = {"x": 163.3, "y": 75.7, "w": 116, "h": 111, "score": 0.9755}
        b = dets[0]["box"]
        fg.check(all(abs(b[k] - want[k]) <= 2 for k in ("x", "y", "w", "h"))
                 and abs(dets[0]["confidence"] - want["score"]) <= 0.01,
                 f"the astronaut's face where face-api finds it ({want})")
    st, hdrs, body = gw.detect(png, "?format=jpeg", content_type="image/png")
    fg.check(st == 200 and hdrs.get("content-type") == "image/jpeg" and body[:2] == b"\xff\xd8",
             f"?format=jpeg -> an annotated JPEG ({st})")
    logs = gateway_logs()
    fg.check("stock darknet forward" not in logs, "the backends run the fast path (OpenBLAS loaded)")
    fg.check("does not ship" not in logs, "darknet never called OpenCV")

    # ---- scale to 4 under load; SIGKILL a backend; no frame lost ----
    env["FRAMEGATE_MAX_BACKENDS"] = "4"
    r = run(compose + ["up", "-d"], env=env, timeout=300)
    fg.check(r.returncode == 0 and wait_healthy(), "recreated with FRAMEGATE_MAX_BACKENDS=4, healthy")
    load = fg.Load(gw, clients=8, img=dog).start()
    seen, killed, end = 0, None, time.time() + 180
    while time.time() < end:
        b = gw.backends() or {}
        ready = [x for x in b.get("backends", []) if x.get("state") == "ready"]
        seen = max(seen, len(ready))
        if seen >= 4 and killed is None:
            victim = ready[-1]
            # The local provider's instance id is the backend's pid (in the container's pid
            # namespace, where the gateway runs).
            pid = str(victim.get("pid", victim.get("instance")))
            if not pid.isdigit():
                raise RuntimeError(f"no pid for {victim}")
            r = run(["docker", "exec", container(), "bash", "-c", f"kill -KILL {pid}"])
            killed = victim
            fg.log(f"SIGKILLed {victim['name']} (pid {pid} in the container)")
            kill_t = time.time()
        if killed is not None and time.time() - kill_t > 10:
            break
        time.sleep(0.5)
    load.stop()
    fg.check(seen == 4, f"4 backends ready under load (max seen {seen})")
    fg.check(killed is not None and r.returncode == 0, "a backend was SIGKILLed in the container")
    sts = load.statuses()
    fg.log(f"frames under load: {sts}")
    fg.check(sum(sts.values()) > 0 and list(sts) == [200],
             f"every frame answered 200, none lost ({sum(sts.values())} frames)")
    b = gw.backends() or {}
    fg.check(killed is not None and all(x.get("name") != killed["name"]
                                         or x.get("instance") != killed.get("instance")
                                         for x in b.get("backends", [])),
             "the killed backend is gone from /v1/backends")

    # ---- down within the grace period, under load ----
    load = fg.Load(gw, clients=4, img=dog).start()
    time.sleep(2)
    t0 = time.time()
    r = run(compose + ["down"], env=env, timeout=GRACE + 60)
    down_s = time.time() - t0
    load.stop()
    up = False
    fg.log(f"DOWN: {down_s:.1f} s; frames during it: {load.statuses()}")
    fg.check(r.returncode == 0 and down_s < GRACE, f"docker-compose down within {GRACE} s")
    fg.check(project_containers() == [], "no container left")
except Exception as e:  # a failed step: report it, clean up, fail
    fg.check(False, f"{type(e).__name__}: {e}")
finally:
    if up:
        fg.log(gateway_logs()[-3000:])
        run(compose + ["down", "-t", "5"], env=env, timeout=120)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    engine.stop()
fg.finish()
