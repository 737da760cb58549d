#!/usr/bin/env python3
"""The gce provider against a fake Google token endpoint + Compute API (gcefake.py: HTTPS,
the service-account JWT verified by PyJWT, every compute call's bearer token checked,
instances that run framegate's startup script, i.e. a real framegate-backend joining the
gateway over mutual TLS):
- min_backends=1: an instance inserted (operation polled), booted, joined, serving;
- a burst scales out to 4 with 0 failed frames; idle deletes back to 1;
- 503s for a while: retried, reported in /v1/backends; a short-lived token is refreshed;
- SIGKILL with 4 up, restart on the same cluster label: leftovers adopted (or deleted);
- SIGTERM deletes every instance;
- a key the token endpoint does not trust: the JWT is refused, last_error says so."""
# ctest-timeout: 240
import atexit
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time

import fg

sys.path.insert(0, os.path.dirname(__file__))
from gcefake import GceFake, service_account_key  # noqa: E402

S = fg.SLOW
CERTS = os.path.join(fg.SRC, "scripts", "certs.sh")
tmp = tempfile.mkdtemp(prefix="fgt-gce-")
pki = os.path.join(tmp, "pki")
EMAIL = "framegate-test@p.iam.gserviceaccount.com"


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
certs("issue", pki, "google", "--ip", "127.0.0.1")
fake = GceFake(os.path.join(pki, "google.crt"), os.path.join(pki, "google.key"),
               os.path.join(tmp, "vms"), "p", "us-central1-a", EMAIL, None)
atexit.register(fake.close)
keyfile = os.path.join(tmp, "sa.json")
fake.public_pem = service_account_key(keyfile, EMAIL, fake.url + "/token")
cluster = "test-" + secrets.token_hex(4)


JOIN_PORT = fg.free_port()  # leftovers re-join the next gateway there


def gateway(key=keyfile, **extra):
    settings = {
        "model.app.provider": "gce", "min_backends": 1, "max_backends": 4,
        "target_inflight_per_backend": 1, "scale_interval_ms": 250, "stable_window_ms": 3000,
        "panic_window_ms": 2000, "start_timeout_ms": 20000,
        "model.app.backend_args": "--simulate-ms 100",
        "join_listen": f"tls+tcp://127.0.0.1:{JOIN_PORT}",  # the same for every gateway
        "tls_ca": os.path.join(pki, "ca.crt"), "tls_cert": os.path.join(pki, "gateway.crt"),
        "tls_key": os.path.join(pki, "gateway.key"),
        "cloud_backend_cert": os.path.join(pki, "cloud.crt"),
        "cloud_backend_key": os.path.join(pki, "cloud.key"),
        "cloud_backend_command": os.path.join(fg.BIN, "framegate-backend"),
        "cloud_cluster": cluster, "cloud_reap_interval_ms": 1000, "cloud_api_timeout_ms": 5000,
        "gce_project": "p", "gce_zone": "us-central1-a", "gce_machine_type": "e2-small",
        "gce_image": "projects/debian-cloud/global/images/family/debian-12",
        "gce_key_file": key, "gce_endpoint": fake.url + "/compute/v1/",
        "gce_ca_file": os.path.join(pki, "ca.crt"),
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
             f"min_backends=1: an instance inserted, booted, joined, ready ({time.time() - t0:.1f} s)")
    b = gw.backends()["backends"][0]
    vm = fake.instances[b["instance"]]["obj"]
    fg.check(b["provider"] == "gce" and vm["labels"]["framegate-cluster"] == cluster and
             vm["labels"]["framegate-backend"] == "app-instance1",
             f"labels on the instance ({vm['labels']})")
    # Polled once a second while RUNNING: an instance can join before the first poll.
    fg.check(wait_for(lambda: fake.requests.get("GET operations", 0) >= 1, 10),
             "the insert operation was polled")
    st, _, _ = gw.detect(img)
    fg.check(st == 200, f"a frame is answered by the GCE instance ({st})")

    load = fg.Load(gw, clients=12).start()
    t0 = time.time()
    reached = wait_for(lambda: ready(gw) == 4, 60)
    took = time.time() - t0
    time.sleep(1)
    load.stop()
    fg.check(reached, f"burst: 4 instances ready ({took:.1f} s)")
    fg.check(not load.failures(), f"0 failed frames in the burst ({load.statuses()})")
    fg.check(wait_for(lambda: len(gw.backends()["backends"]) == 1 and len(fake.alive()) == 1, 30),
             f"idle: back to 1 instance ({fake.alive()})")

    fake.throttle = 4
    # the retries back off (jittered, doubling): wait for them, not for a fixed time
    wait_for(lambda: fake.throttle == 0, 20)
    time.sleep(0.3)
    st, _, _ = gw.detect(img)
    fg.check(st == 200, "frames answered while the API answers 503")
    pe = gw.backends().get("provider_error") or ""
    fg.check("503" in pe, f"503 shows in /v1/backends ({pe!r})")
    fg.check(fake.throttle == 0, "the failed calls were retried")

    load = fg.Load(gw, clients=12).start()
    wait_for(lambda: ready(gw) == 4, 60)
    load.stop()
    fg.check(len(fake.alive()) == 4, f"4 instances before the SIGKILL ({len(fake.alive())})")
    gw.stop(sig=signal.SIGKILL, timeout=5)
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)

fake.expires_in = 63  # refreshed a minute before it expires: within ~3 s
tokens = fake.tokens
gw = gateway()
gw.start()
try:
    known = lambda: {b["instance"] for b in gw.backends()["backends"]}  # noqa: E731
    clean = wait_for(lambda: set(fake.alive()) <= known() and ready(gw) >= 1, 30)
    fg.check(clean, f"after SIGKILL and restart: leftovers adopted or deleted "
                    f"(unknown left: {set(fake.alive()) - known()})")
    fg.check("cloud_adopted" in gw.log(), "leftovers adopted (cloud_adopted)")
    fg.check(wait_for(lambda: fake.tokens >= tokens + 2, 15),
             f"a short-lived token is refreshed before it expires ({fake.tokens - tokens} issued)")
    code = gw.stop(sig=signal.SIGTERM, timeout=30)
    fg.check(code == 0, f"SIGTERM: exit 0 ({code})")
    fg.check(fake.alive() == [], f"SIGTERM deleted every instance ({fake.alive()})")
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)
fake.expires_in = 3599

other = os.path.join(tmp, "other.json")
service_account_key(other, EMAIL, fake.url + "/token")  # a key the fake does not know
refused = fake.refused
gw = gateway(key=other)
gw.start()
try:
    err = wait_for(lambda: "invalid_grant" in (gw.backends().get("last_error") or ""), 20)
    fg.check(err, f"untrusted key: the JWT is refused, last_error says so "
                  f"({gw.backends().get('last_error')!r})")
    fg.check(fake.refused > refused and fake.alive() == [], "no instance without a valid token")
finally:
    gw.stop(sig=signal.SIGTERM, timeout=20)

fake.close()
fg.finish()
