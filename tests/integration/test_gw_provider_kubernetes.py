#!/usr/bin/env python3
"""The kubernetes provider against a fake API server (k8sfake.py: HTTPS, bearer token checked
on every request, pods "run" as real framegate-backend processes that join the gateway over
mutual TLS):
- min_backends=1: a pod is created from the template (labels, args), runs, joins, serves;
- a burst scales out to 4 pods with 0 failed frames; idle deletes back to 1;
- the API answers 429 for a while: retried, reported in /v1/backends, frames keep flowing;
- the token file rotates: the next calls carry the new token;
- SIGKILL with 4 pods, restart on the same cluster label: leftovers adopted (or deleted), none left
  unknown;
- SIGTERM deletes every pod;
- a wrong token: refused by the fake (401), last_error says Unauthorized."""
# ctest-timeout: 240
import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import fg

sys.path.insert(0, os.path.dirname(__file__))
from k8sfake import K8sFake  # noqa: E402

S = fg.SLOW
CERTS = os.path.join(fg.SRC, "scripts", "certs.sh")
tmp = tempfile.mkdtemp(prefix="fgt-k8s-")
pki = os.path.join(tmp, "pki")
tlsdir = os.path.join(tmp, "tls")  # what the pod template would mount from a Secret


def certs(*args):
    subprocess.run([CERTS] + list(args), check=True, stdout=subprocess.DEVNULL)


def wait_for(cond, timeout, step=0.1):
    end = time.time() + timeout * S
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


certs("init", pki, "--ip", "127.0.0.1")
certs("issue", pki, "cloud", "--ip", "127.0.0.1")
certs("issue", pki, "apiserver", "--ip", "127.0.0.1")
os.makedirs(tlsdir)
shutil.copy(os.path.join(pki, "ca.crt"), os.path.join(tlsdir, "ca.crt"))
shutil.copy(os.path.join(pki, "cloud.crt"), os.path.join(tlsdir, "tls.crt"))
shutil.copy(os.path.join(pki, "cloud.key"), os.path.join(tlsdir, "tls.key"))
token_file = os.path.join(tmp, "token")
with open(token_file, "w") as f:
    f.write("tok-" + secrets.token_hex(8) + "\n")
with open(token_file) as f:
    token = f.read().strip()
template = os.path.join(tmp, "pod.json")
with open(template, "w") as f:
    json.dump({"metadata": {"labels": {"app": "framegate-backend"}},
               "spec": {"containers": [{"name": "backend", "image": "framegate:latest",
                                        "resources": {"limits": {"cpu": "1"}}}]}}, f)
fake = K8sFake(os.path.join(pki, "apiserver.crt"), os.path.join(pki, "apiserver.key"),
               os.path.join(tmp, "pods"), os.path.join(fg.BIN, "framegate-backend"), token)
atexit.register(fake.close)
cluster = "test-" + secrets.token_hex(4)


JOIN_PORT = fg.free_port()  # leftovers re-join the next gateway there


def gateway(tokfile=token_file, **extra):
    settings = {
        "model.app.provider": "kubernetes", "min_backends": 1, "max_backends": 4,
        "target_inflight_per_backend": 1, "scale_interval_ms": 250, "stable_window_ms": 3000,
        "panic_window_ms": 2000, "start_timeout_ms": 20000,
        "model.app.backend_args": "--simulate-ms 100",
        "join_listen": f"tls+tcp://127.0.0.1:{JOIN_PORT}",  # the same for every gateway
        "tls_ca": os.path.join(pki, "ca.crt"), "tls_cert": os.path.join(pki, "gateway.crt"),
        "tls_key": os.path.join(pki, "gateway.key"),
        "cloud_cluster": cluster, "cloud_reap_interval_ms": 1000, "cloud_api_timeout_ms": 5000,
        "k8s_server": fake.url, "k8s_ca_file": os.path.join(pki, "ca.crt"),
        "k8s_token_file": tokfile, "k8s_namespace": "fg", "k8s_pod_template": template,
        "k8s_tls_dir": tlsdir,
    }
    settings.update(extra)
    return fg.Gateway(settings=settings, wait_ready=False)


def ready(gw):
    return sum(1 for b in gw.backends()["backends"] if b["state"] == "ready")


img = fg.image()
gw = gateway()
gw.start()
try:
    t0 = time.time()
    fg.check(wait_for(lambda: ready(gw) >= 1, 30),
             f"min_backends=1: a pod created, running, joined and ready ({time.time() - t0:.1f} s)")
    b = gw.backends()["backends"][0]
    fg.check(b["provider"] == "kubernetes" and b["instance"].startswith("app-instance1-"),
             f"/v1/backends shows the pod ({b['instance']})")
    pod = fake.pods[("fg", b["instance"])]["obj"]
    labels = pod["metadata"]["labels"]
    fg.check(labels.get("framegate-cluster") == cluster and labels.get("app") ==
             "framegate-backend" and labels.get("framegate-backend") == "app-instance1",
             f"labels: the template's and ours ({labels})")
    fg.check(pod["spec"]["restartPolicy"] == "Never" and
             pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1",
             "the template's container kept, restartPolicy Never")
    st, _, _ = gw.detect(img)
    fg.check(st == 200, f"a frame is answered by the pod ({st})")

    load = fg.Load(gw, clients=12).start()
    t0 = time.time()
    reached = wait_for(lambda: ready(gw) == 4, 60)
    took = time.time() - t0
    time.sleep(1)
    load.stop()
    fg.check(reached, f"burst: 4 pods ready ({took:.1f} s)")
    fg.check(not load.failures(), f"0 failed frames in the burst ({load.statuses()})")
    back = wait_for(lambda: len(gw.backends()["backends"]) == 1 and len(fake.alive()) == 1, 30)
    fg.check(back, f"idle: back to 1 pod ({fake.alive()})")

    fake.throttle = 4
    # the retries back off (jittered, doubling): wait for them, not for a fixed time
    wait_for(lambda: fake.throttle == 0, 20)
    time.sleep(0.3)
    st, _, _ = gw.detect(img)
    fg.check(st == 200, "frames answered while the API answers 429")
    pe = gw.backends().get("provider_error") or ""
    fg.check("429" in pe, f"429 shows in /v1/backends ({pe!r})")
    fg.check(fake.throttle == 0, "the throttled calls were retried")

    # token rotation: the file changes, the fake accepts only the new one
    new = "tok-" + secrets.token_hex(8)
    with open(token_file, "w") as f:
        f.write(new + "\n")
    fake.token = new
    refused = fake.refused
    lists = fake.requests.get("GET pods", 0)
    wait_for(lambda: fake.requests.get("GET pods", 0) >= lists + 2, 10)
    fg.check(fake.refused == refused, "after the token file rotated, calls carry the new token")

    load = fg.Load(gw, clients=12).start()
    wait_for(lambda: ready(gw) == 4, 60)
    load.stop()
    fg.check(len(fake.alive()) == 4, f"4 pods before the SIGKILL ({len(fake.alive())})")
    gw.stop(sig=signal.SIGKILL, timeout=5)
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)

gw = gateway()
gw.start()
try:
    known = lambda: {b["instance"] for b in gw.backends()["backends"]}  # noqa: E731
    clean = wait_for(lambda: set(fake.alive()) <= known() and ready(gw) >= 1, 30)
    fg.check(clean, f"after SIGKILL and restart: leftovers adopted or deleted "
                    f"(unknown left: {set(fake.alive()) - known()})")
    fg.check("cloud_adopted" in gw.log(), "leftovers adopted (cloud_adopted)")
    code = gw.stop(sig=signal.SIGTERM, timeout=30)
    fg.check(code == 0, f"SIGTERM: exit 0 ({code})")
    fg.check(fake.alive() == [], f"SIGTERM deleted every pod ({fake.alive()})")
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)

bad = os.path.join(tmp, "bad-token")
with open(bad, "w") as f:
    f.write("not-the-token\n")
gw = gateway(tokfile=bad)
gw.start()
try:
    err = wait_for(lambda: "Unauthorized" in (gw.backends().get("last_error") or ""), 20)
    fg.check(err, f"wrong token: last_error says Unauthorized ({gw.backends().get('last_error')!r})")
    fg.check(fake.alive() == [], "no pod created with a wrong token")
finally:
    gw.stop(sig=signal.SIGTERM, timeout=20)

fake.close()
fg.finish()
