#!/usr/bin/env python3
"""The compose backends profile on a real Docker engine (docker-compose.yml +
docker-compose.backends.yml): `up -d --scale backend=3` makes the certificates on first start
(the `certs` service, into named volumes), the gateway becomes healthy, the three backend
containers register over mutual TLS and show in /v1/backends, frames are answered (the
astronaut's face) and spread over all three; one backend container is SIGKILLed under load
(its init, from the host: the container dies) and no frame is lost, the engine restarts it
(restart: unless-stopped) and it joins again and gets frames; `down -v` under load finishes
within the grace period and leaves no container, volume or network of the project.
Reuses the image test_compose_up.py builds (ctest runs that first; here the build is a cache
hit in seconds, or the cold build when run alone). Engine handling and skips (77) as in
test_compose_up.py (tests/integration/dockerfg.py).
Prints: build time, `up` to healthy, to three backends ready, the rejoin time, `down` time."""
# ctest-timeout: 2400
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fg  # noqa: E402
import dockerfg as dfg  # noqa: E402
from dockerfg import run  # noqa: E402

PROJECT = f"fgtestbe{os.getpid()}"
GRACE = 30  # the gateway's stop_grace_period (the backends' is 20 s)
N = 3

engine = dfg.Engine()  # skips (77) where no engine can run

port = fg.free_port()
# Its own network name: the backends' certificate names *.NETWORK (a user's `framegate`
# network, or another run's, is left alone).
env = dfg.compose_env(PROJECT, port, FRAMEGATE_NETWORK=PROJECT)
compose = dfg.compose_cmd(PROJECT, "docker-compose.yml", "docker-compose.backends.yml")
gw = dfg.remote(port)


def ids(service):
    return run(compose + ["ps", "-q", service], env=env, quiet=True).stdout.split()


def gateway_id():
    c = ids("gateway")
    return c[0] if c else ""


def logs(*services):
    return run(compose + ["logs", "--no-color"] + list(services), env=env, quiet=True).stdout


def inspect(cid):
    r = run(["docker", "inspect", cid], quiet=True)
    return json.loads(r.stdout)[0] if r.returncode == 0 else {}


def face_backends():
    b = gw.backends() or {}
    return [x for x in b.get("backends", []) if x.get("model") == "face"]


def ready():
    return [x for x in face_backends() if x.get("state") == "ready"]


def wait_for(cond, timeout, step=0.25):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


up = False
try:
    env["FRAMEGATE_BASE"] = dfg.base_image()

    # ---- the image: test_compose_up.py's build, from the cache ----
    t0 = time.time()
    r = run(compose + ["build"], env=env, timeout=1800)
    fg.log(f"BUILD: {time.time() - t0:.1f} s ({r.stdout.count('Using cache')} steps from the "
           f"cache)")
    if not fg.check(r.returncode == 0, "docker-compose build succeeds (all three services)"):
        raise RuntimeError("build failed")

    # ---- up with three backends: certificates, healthy, three registered ----
    t0 = time.time()
    r = run(compose + ["up", "-d", "--scale", f"backend={N}"], env=env, timeout=600)
    up = True
    fg.check(r.returncode == 0, f"up -d --scale backend={N} succeeds")
    healthy = dfg.wait_healthy(gateway_id)
    fg.log(f"UP to healthy: {time.time() - t0:.1f} s")
    if not fg.check(healthy, "the gateway container becomes healthy"):
        raise RuntimeError("not healthy:\n" + logs()[-4000:])
    three = wait_for(lambda: len(ready()) == N and ready(), 120)
    fg.log(f"UP to {N} backends ready: {time.time() - t0:.1f} s")
    fg.check(three, f"{N} backends registered and ready ({[x['name'] for x in ready()]})")

    hs = wait_for(lambda: all(inspect(c).get("State", {}).get("Health", {}).get("Status")
                              == "healthy" for c in ids("backend")), 40)
    fg.check(hs, "the backend containers are healthy (their healthcheck: listening)")

    certs = ids("certs")
    st = inspect(certs[0]).get("State", {}) if certs else {}
    fg.check(st.get("Status") == "exited" and st.get("ExitCode") == 0,
             f"the certs service made the certificates and exited 0 ({st.get('Status')} "
             f"{st.get('ExitCode')})")
    fg.log(logs("certs").strip()[-600:])
    # Each backend is its container: instance = hostname (the short id), dialled back at
    # HOSTNAME.NETWORK with mutual TLS, certificate verified for that name.
    conts = {cid[:12] for cid in ids("backend")}
    got = {x.get("instance") for x in (three or [])}
    fg.check(len(conts) == N and got == conts,
             f"the registered backends are the {N} containers ({sorted(got)} vs {sorted(conts)})")
    fg.check(all(x.get("provider") == "registered"
                 and x.get("address") == f"tls+tcp://{x['instance']}.{PROJECT}:7000"
                 and x.get("tls_peer") == f"{x['instance']}.{PROJECT}" for x in (three or [])),
             "each registered over mutual TLS: provider registered, address and verified peer "
             "HOSTNAME.NETWORK" + "".join(f"\n      {x}" for x in (three or [])[:1]))

    # ---- frames: the face model's answers come from the backend containers ----
    png = open("/usr/lib/python3/dist-packages/skimage/data/astronaut.png", "rb").read()
    s, _, body = gw.detect(png, content_type="image/png")
    dets = json.loads(body).get("detections", []) if s == 200 else []
    fg.log(f"astronaut.png: {s} {[(d['label'], d['confidence'], d['box']) for d in dets]}")
    fg.check(len(dets) == 1 and dets[0]["label"] == "face"
             and abs(dets[0]["confidence"] - 0.9755) <= 0.01,
             "astronaut.png -> one face at 0.9755 (the backends' flags are the model's)")
    dog = fg.image("dog.jpg")
    before = {x["instance"]: x["served"] for x in ready()}
    load = fg.Load(gw, clients=6, img=dog).start()
    spread = wait_for(lambda: all(x["served"] > before.get(x["instance"], 0) for x in ready())
                      and len(ready()) == N, 60)
    fg.check(spread, "frames spread over all three backends "
                     f"({[(x['instance'], x['served']) for x in ready()]})")

    # ---- a backend container dies under load: no frame lost, the engine restarts it, it
    # joins again and gets frames ----
    victim = sorted(ids("backend"))[0]
    info = inspect(victim)
    restarts0, init_pid = info["RestartCount"], info["State"]["Pid"]
    served0 = len(load.results)
    os.kill(init_pid, 9)  # the container's init (tini): its whole pid namespace dies
    kill_t = time.time()
    fg.log(f"SIGKILLed backend container {victim[:12]} (init pid {init_pid} on the host) after "
           f"{served0} frames")

    def rejoined():
        i = inspect(victim)
        if i.get("RestartCount", 0) <= restarts0 or not i.get("State", {}).get("Running"):
            return None
        back = [x for x in ready() if x["instance"] == victim[:12] and x["served"] > 0
                and x.get("ready_at") and x["ready_at"] > kill_iso]
        return back or None

    kill_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(kill_t - 1))
    back = wait_for(rejoined, 90)
    fg.log(f"REJOIN: {time.time() - kill_t:.1f} s after the kill "
           f"(restart count {inspect(victim).get('RestartCount')})")
    fg.check(back, "the engine restarted the killed container; it joined again and gets frames")
    time.sleep(2)
    load.stop()
    sts = load.statuses()
    fg.log(f"frames under load: {sts}")
    fg.check(sum(sts.values()) > served0 and list(sts) == [200],
             f"every frame answered 200 across the kill, none lost ({sum(sts.values())} frames)")
    gl = logs("gateway")
    fg.check(len(re.findall(rf"event=backend_joined model=face name=\S+ "
                            rf"addr=tls\+tcp://{victim[:12]}\.", gl)) >= 1,
             "the gateway logged the backend's join")

    # ---- down -v under load: within the grace period, nothing left. The gateway stops
    # first (it depends on the backends): its frames finish on them. The load stops once the
    # gateway refuses (a client spinning on refused connections would eat the CPU). ----
    load = fg.Load(gw, clients=4, img=dog).start()
    time.sleep(2)
    t0 = time.time()
    down = subprocess.Popen(compose + ["down", "-v"], env=env, cwd=dfg.SRC, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    while down.poll() is None and time.time() - t0 < GRACE + 60 and not load.failures():
        time.sleep(0.05)
    load.stop()
    try:
        out, _ = down.communicate(timeout=max(1, GRACE + 60 - (time.time() - t0)))
    except subprocess.TimeoutExpired:
        down.kill()
        out, _ = down.communicate()
    down_s = time.time() - t0
    up = down.returncode != 0
    fg.log(f"DOWN: {down_s:.1f} s; frames during it: {load.statuses()}")
    fg.check(down.returncode == 0 and down_s < GRACE,
             f"docker-compose down -v within {GRACE} s" + ("" if down_s < GRACE else "\n" + out))
    left = dfg.leftovers(PROJECT)
    fg.check(not left, f"no container, volume or network of the project left ({left})")
except Exception as e:  # a failed step: report it, clean up, fail
    fg.check(False, f"{type(e).__name__}: {e}")
finally:
    if up:
        fg.log(logs()[-5000:])
        run(compose + ["down", "-v", "-t", "5"], env=env, timeout=120)
    dfg.remove_project(PROJECT)
    engine.stop()
fg.finish()
