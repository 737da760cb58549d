#!/usr/bin/env python3
"""Registered backends (issue 12): backends on network-namespace hosts announce themselves
to the gateway's join listener (framegate-backend --join tls+tcp://GATEWAY:7700, mutual TLS)
and the gateway dials them back.
- one joins under load and gets frames within a second of its registration;
- one drains on SIGTERM: it deregisters first, answers what it holds, exits 0, and no frame
  is lost;
- a backend killed without leaving is expired once it stops repeating its join (30 s);
- a backend of a model the gateway does not serve is refused, with the reason logged on both
  sides; one with a certificate from another CA is refused at the handshake (logged on both
  sides); the gateway keeps serving.
Skipped (exit 0 with a message) without root, ip or iptables."""
# ctest-timeout: 240
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import fg
import netns

S = fg.SLOW
SIM_MS = 20
PORT, JOIN_PORT = 7000, 7700

why = netns.available()
if why:
    print("skip:", why)
    sys.exit(0)

CERTS = os.path.join(fg.SRC, "scripts", "certs.sh")
tmp = tempfile.mkdtemp(prefix="fgt-join-")
ca, other = os.path.join(tmp, "pki"), os.path.join(tmp, "other-pki")


def certs(*args):
    subprocess.run([CERTS] + list(args), check=True, stdout=subprocess.DEVNULL)


def wait_for(cond, timeout, step=0.05):
    end = time.time() + timeout * S
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def log_of(host, port):
    with open(os.path.join(tmp, f"{host.name}-{port}.log")) as f:
        return f.read()


with netns.Net(3) as net:
    h1, h2, h3 = net.hosts
    join_url = f"tls+tcp://{net.gateway_ip}:{JOIN_PORT}"
    certs("init", ca, "--ip", net.gateway_ip)
    for h in net.hosts:
        certs("issue", ca, h.name, "--ip", h.ip)
    certs("init", other)
    certs("issue", other, "stranger", "--ip", h3.ip)

    def backend(host, port, cert_dir, cert, model="reg"):
        cmd = [os.path.join(fg.BIN, "framegate-backend"),
               "--listen", f"tls+tcp://{host.ip}:{port}", "--simulate-ms", str(SIM_MS),
               "--model-name", model, "--instance", f"{host.name}-{port}",
               "--tls-cert", os.path.join(cert_dir, cert + ".crt"),
               "--tls-key", os.path.join(cert_dir, cert + ".key"),
               "--tls-ca", os.path.join(cert_dir, "ca.crt"), "--join", join_url]
        log = open(os.path.join(tmp, f"{host.name}-{port}.log"), "w")
        return host.spawn(cmd, log=log)

    settings = {
        "models": "reg", "model.reg.provider": "registered",
        "join_listen": f"tls+tcp://{net.gateway_ip}:{JOIN_PORT}",
        "tls_ca": os.path.join(ca, "ca.crt"), "tls_cert": os.path.join(ca, "gateway.crt"),
        "tls_key": os.path.join(ca, "gateway.key"),
        "deadline_ms": 20000, "retries": 3,
    }
    with fg.Gateway(settings=settings, app_model=False, wait_ready=False) as gw:
        st, _, _ = gw.detect(fg.image())
        fg.check(st == 503, f"nothing registered yet: 503 at once ({st})")
        b1 = backend(h1, PORT, ca, h1.name)
        ok = wait_for(lambda: any(b["state"] == "ready" for b in gw.backends()["backends"]), 30)
        fg.check(ok, "a registered backend is dialled back and ready")

        # ---- one joins under load and gets frames within a second
        load = fg.Load(gw, clients=4).start()
        wait_for(lambda: len(load.results) >= 40, 30)
        b2 = backend(h2, PORT, ca, h2.name)
        joined = wait_for(lambda: re.search(rf"event=backend_joined model=reg name=\S+ "
                                            rf"addr=tls\+tcp://{re.escape(h2.ip)}:{PORT} ",
                                            gw.log()), 30, step=0.01)
        t_join = time.time()
        addr2 = f"tls+tcp://{h2.ip}:{PORT}"
        served = wait_for(lambda: [b for b in gw.backends()["backends"]
                                   if b["address"] == addr2 and b["served"] > 0], 10, step=0.02)
        took = time.time() - t_join
        fg.check(joined and served and took < 1.0 * S,
                 f"the joining backend gets frames within a second ({took:.2f} s)")
        if served:
            b = served[0]
            fg.check(b["provider"] == "registered" and b["instance"] == f"{h2.name}-{PORT}" and
                     b["tls_peer"] == h2.ip,
                     f"/v1/backends: provider registered, its name, its TLS peer ({b})")

        # ---- one drains on SIGTERM under load: deregistered first, no frame lost
        time.sleep(1)
        b1.send_signal(signal.SIGTERM)
        try:
            code = b1.wait(20 * S)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(1)
        load.stop()
        st = load.statuses()
        fg.check(st.get(200, 0) == len(load.results) and len(load.results) > 100,
                 f"no frame lost across a join and a leave ({st})")
        fg.check(code == 0, f"the leaving backend exits 0 ({code})")
        fg.check("deregistered" in log_of(h1, PORT), "it deregistered before exiting")
        fg.check(re.search(rf"event=backend_left model=reg .*addr=tls\+tcp://{re.escape(h1.ip)}",
                           gw.log()) is not None, "the gateway logs the leave")
        left = [b for b in gw.backends()["backends"] if b["address"].endswith(f"{h1.ip}:{PORT}")]
        fg.check(not left, f"it is gone from /v1/backends ({left})")

        # ---- refusals: an unknown model, a certificate from another CA
        bad_model = backend(h3, PORT, ca, h3.name, model="nosuch")
        stranger = backend(h3, PORT + 1, other, "stranger")
        fg.check(wait_for(lambda: re.search(r"event=join_refused op=join model=nosuch .*"
                                            r"no model named 'nosuch'", gw.log()), 30),
                 "an unknown model is refused, logged by the gateway")
        fg.check(wait_for(lambda: "refused the registration: no model named 'nosuch'"
                          in log_of(h3, PORT), 20),
                 "... and by the backend")
        fg.check(wait_for(lambda: "event=join_tls_refused" in gw.log(), 30),
                 "a certificate from another CA is refused at the handshake, logged by the "
                 "gateway")
        fg.check(wait_for(lambda: "TLS handshake failed" in log_of(h3, PORT + 1), 20),
                 "... and by the backend")
        for line in gw.log().splitlines():
            if "join_refused" in line or "join_tls_refused" in line:
                fg.log("     ", line[line.index("event="):][:200])
        load = fg.Load(gw, clients=2, per_client=10).start().join(60)
        fg.check(load.statuses().get(200, 0) == 20, f"the gateway keeps serving ({load.statuses()})")

        # ---- a backend that dies without leaving: its registration expires
        b2.kill()
        b2.wait()
        fg.check(wait_for(lambda: re.search(rf"event=backend_expired model=reg "
                                            rf"addr=tls\+tcp://{re.escape(h2.ip)}:{PORT} ",
                                            gw.log()), 50),
                 "a backend killed without leaving is expired (no join for 30 s)")
        fg.check(wait_for(lambda: gw.backends()["backends"] == [], 10),
                 "and gone from /v1/backends")
        if fg._failures:
            print(gw.log()[-5000:])

if not fg._failures:
    shutil.rmtree(tmp, ignore_errors=True)
else:
    fg.log("backend logs kept in", tmp)
fg.finish()
