#!/usr/bin/env python3
"""Backends on other machines (issue 12), with real namespaces, real TLS and real processes.

Three "hosts" (network namespaces on a private bridge, tests/integration/netns.py) each run a
framegate-backend (--simulate-ms) on tls+tcp://HOST:7000 with a certificate from
scripts/certs.sh; the gateway, in the root namespace, lists them in backends_static of model
"cam". Checked:
- a dead address at start does not block the others, and joins when its backend comes up;
- frames are answered and balanced over the three, /v1/backends shows provider, instance,
  address and TLS peer name;
- model "bad" lists a backend with a certificate from another CA, one with an expired
  certificate and a plain tcp:// dial to a tls+tcp listener: each start is refused with a
  backend_tls_refused log line naming the address, counted, while "cam" keeps serving; a
  client without a certificate (openssl s_client) is refused by a backend, which keeps
  serving;
- a silent partition of one host (iptables DROP inside it) under load: every frame answered,
  the backend suspected within the bound, back in after the rule is removed;
- every process of one host killed under load: every frame answered; back when restarted.
Skipped (exit 0 with a message) without root, ip or iptables."""
# ctest-timeout: 300
import calendar
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import fg
import netns

S = fg.SLOW
SIM_MS = 20
HUNG_MIN_MS = 1000
GRACE_MS = 2000
HEARTBEAT_MS = 1000
PORT = 7000

why = netns.available()
if why:
    print("skip:", why)
    sys.exit(0)

CERTS = os.path.join(fg.SRC, "scripts", "certs.sh")
tmp = tempfile.mkdtemp(prefix="fgt-remote-")
ca, other = os.path.join(tmp, "pki"), os.path.join(tmp, "other-pki")


def certs(*args):
    subprocess.run([CERTS] + list(args), check=True, stdout=subprocess.DEVNULL)


def backend(host, name, port, cert_dir, cert, scheme="tls+tcp", extra=()):
    """framegate-backend on host:port, serving model "cam" in simulate mode."""
    cmd = [os.path.join(fg.BIN, "framegate-backend"), "--listen",
           f"{scheme}://{host.ip}:{port}", "--simulate-ms", str(SIM_MS), "--model-name",
           name, "--instance", f"{host.name}-{port}"]
    if scheme == "tls+tcp":
        cmd += ["--tls-cert", os.path.join(cert_dir, cert + ".crt"), "--tls-key",
                os.path.join(cert_dir, cert + ".key"), "--tls-ca", os.path.join(cert_dir, "ca.crt")]
    cmd += list(extra)
    log = open(os.path.join(tmp, f"{host.name}-{port}.log"), "w")
    return host.spawn(cmd, log=log)


def wait_for(cond, timeout, step=0.05):
    end = time.time() + timeout * S
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def cam_backends(gw):
    return [b for b in gw.backends()["backends"] if b["model"] == "cam" or
            b["name"].startswith("cam-")]


def log_time(line):
    """The ts= (UTC, milliseconds) of a gateway log line as a unix time."""
    m = re.search(r"ts=(\S+)Z", line)
    return calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
        int(m.group(1)[20:23]) / 1000


with netns.Net(3) as net:
    h1, h2, h3 = net.hosts
    certs("init", ca)
    for h in net.hosts:
        certs("issue", ca, h.name, "--ip", h.ip)
    certs("issue", ca, "expired", "--ip", h2.ip, "--start", "20200101000000Z",
          "--end", "20200201000000Z")
    certs("init", other)
    certs("issue", other, "stranger", "--ip", h1.ip)

    # h1 and h2 now; h3 only after the gateway is up (a dead address at start).
    procs = {h1: backend(h1, "cam", PORT, ca, h1.name), h2: backend(h2, "cam", PORT, ca, h2.name)}
    bad = [backend(h1, "bad", 7001, other, "stranger"),
           backend(h2, "bad", 7001, ca, "expired"),
           backend(h3, "bad", 7001, ca, h3.name)]
    cam_list = " ".join(f"tls+tcp://{h.ip}:{PORT}" for h in net.hosts)
    bad_list = f"tls+tcp://{h1.ip}:7001 tls+tcp://{h2.ip}:7001 tcp://{h3.ip}:7001"
    settings = {
        "models": "cam,bad", "default_model": "cam",
        "model.cam.backends_static": cam_list, "model.bad.backends_static": bad_list,
        "tls_ca": os.path.join(ca, "ca.crt"), "tls_cert": os.path.join(ca, "gateway.crt"),
        "tls_key": os.path.join(ca, "gateway.key"),
        "allow_insecure_backends": "true",  # for the plain tcp:// dial in "bad" only
        "hung_factor": 10, "hung_min_ms": HUNG_MIN_MS, "hung_grace_ms": GRACE_MS,
        "heartbeat_ms": HEARTBEAT_MS,
        "start_timeout_ms": 4000, "backoff_initial_ms": 500, "backoff_max_ms": 2000,
        "deadline_ms": 20000, "retries": 3,
    }
    with fg.Gateway(settings=settings, app_model=False) as gw:
        # ---- a dead address at start does not block the others; it joins when it comes up
        ready = wait_for(lambda: sum(b["state"] == "ready" for b in cam_backends(gw)) >= 2, 20)
        states = {b["address"]: b["state"] for b in cam_backends(gw)}
        fg.check(ready and states.get(f"tls+tcp://{h3.ip}:{PORT}") != "ready",
                 f"two backends ready while the third address is dead ({states})")
        st, _, _ = gw.detect(fg.image())
        fg.check(st == 200, f"a frame is answered meanwhile ({st})")
        procs[h3] = backend(h3, "cam", PORT, ca, h3.name)
        t_up = time.time()
        ok = wait_for(lambda: sum(b["state"] == "ready" for b in cam_backends(gw)) == 3, 30)
        fg.check(ok, f"the third joins once its backend listens ({time.time() - t_up:.1f} s)")

        # ---- balanced over three hosts, each over mutual TLS
        load = fg.Load(gw, clients=6, per_client=30).start().join(120)
        st = load.statuses()
        fg.check(st.get(200, 0) == 180, f"180 frames over tls+tcp answered 200 ({st})")
        bs = cam_backends(gw)
        served = {b["address"]: b["served"] for b in bs}
        fg.check(len(served) == 3 and min(served.values()) >= 20,
                 f"balanced: every host served a fair share ({served})")
        b1 = [b for b in bs if b["address"] == f"tls+tcp://{h1.ip}:{PORT}"][0]
        fg.check(b1["provider"] == "static" and b1["instance"].startswith("static-") and
                 b1["tls_peer"] == h1.ip and b1["last_seen_at"],
                 f"/v1/backends: provider, instance, address, TLS peer, last seen ({b1})")

        # ---- refusals: another CA, expired, plain tcp to a TLS listener; cam keeps serving
        def refused():
            log = gw.log()
            return all(re.search(rf"event=backend_tls_refused backend=bad-\S+ instance=\S+ "
                                 rf"addr={re.escape(a)} ", log) for a in bad_list.split())
        fg.check(wait_for(refused, 20), "each bad backend is refused with a log line naming it")
        log = gw.log()
        for a in bad_list.split():
            line = [l for l in log.splitlines() if "backend_tls_refused" in l and a in l][0]
            fg.log("     ", line[line.index("event="):])
        fg.check(re.search(rf"backend_tls_refused .*addr=tcp://{re.escape(h3.ip)}:7001 .*"
                           r"does it listen on tls\+tcp", log) is not None,
                 "the plain tcp dial to a TLS listener says so")
        m = gw.metrics()
        n = fg.metric_value(m, "framegate_tls_handshake_failures_total", {"model": "bad"})
        fg.check(n >= 3, f"framegate_tls_handshake_failures_total{{model=bad}} counts them ({n})")
        fg.check(all(p.poll() is None for p in bad), "the refused backends keep running")
        be_log = open(os.path.join(tmp, f"{h2.name}-7001.log")).read()
        fg.check("EXPIRED" in be_log, "the backend with the expired certificate warns at start")
        # A client without a certificate: the backend refuses it and keeps serving.
        r = subprocess.run(["openssl", "s_client", "-connect", f"{h1.ip}:{PORT}",
                            "-CAfile", os.path.join(ca, "ca.crt"), "-verify_return_error"],
                           input=b"x", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=20)
        out = r.stdout.decode(errors="replace")
        fg.check("alert" in out.lower() or r.returncode != 0,
                 "a client without a certificate is refused by the backend "
                 f"(openssl exit {r.returncode})")
        load = fg.Load(gw, clients=3, per_client=10).start().join(60)
        fg.check(load.statuses().get(200, 0) == 30, f"cam keeps serving ({load.statuses()})")

        # ---- a silent partition under load
        load = fg.Load(gw, clients=6).start()
        wait_for(lambda: len(load.results) >= 60, 30)
        victim = [b for b in cam_backends(gw) if b["address"] == f"tls+tcp://{h2.ip}:{PORT}"][0]
        t_cut = time.time()
        h2.partition()
        t_sus = wait_for(lambda: re.search(rf"event=backend_suspect backend={victim['name']} ",
                                           gw.log()), 10)
        detect = None
        if t_sus:
            line = [l for l in gw.log().splitlines()
                    if f"event=backend_suspect backend={victim['name']} " in l][0]
            detect = log_time(line) - t_cut
        fg.check(detect is not None and detect < (HUNG_MIN_MS + 1500) / 1000 * S,
                 f"the partitioned backend is suspected within the bound {HUNG_MIN_MS} ms "
                 f"(+ watch tick; took {detect if detect is None else round(detect, 2)} s)")
        time.sleep((GRACE_MS / 1000 + 1) * S)  # past the grace: ejected, re-dialled
        t_heal = time.time()
        h2.heal()
        back = wait_for(lambda: any(b["address"] == victim["address"] and b["state"] == "ready"
                                    for b in cam_backends(gw)), 40)
        fg.check(back, f"back in after the rule is removed ({time.time() - t_heal:.1f} s)")
        time.sleep(0.5)
        load.stop()
        st = load.statuses()
        fg.check(st.get(200, 0) == len(load.results) and len(load.results) > 100,
                 f"no frame lost across the partition ({st})")
        fg.log(f"     partition: suspected after {detect:.2f} s" if detect else "")

        # ---- every process of a host killed under load
        load = fg.Load(gw, clients=6).start()
        wait_for(lambda: len(load.results) >= 60, 30)
        h3.kill_all()
        time.sleep(2 * S)
        n_before = len(load.results)
        procs[h3] = backend(h3, "cam", PORT, ca, h3.name)
        back = wait_for(lambda: sum(b["state"] == "ready" for b in cam_backends(gw)) == 3, 30)
        time.sleep(0.5)
        load.stop()
        st = load.statuses()
        fg.check(st.get(200, 0) == len(load.results) and n_before > 60,
                 f"no frame lost when a host dies ({st})")
        fg.check(back, "the host's backend is back after a restart")
        m = gw.metrics()
        fg.check(fg.metric_value(m, "framegate_backend_suspected_total", {"model": "cam"}) >= 1,
                 "framegate_backend_suspected_total counts the partition")

        # ---- a host cut off while idle: found by the heartbeat before any frame goes there
        time.sleep(1.5)
        idle = [b for b in cam_backends(gw) if b["address"] == f"tls+tcp://{h1.ip}:{PORT}"][0]
        t_cut = time.time()
        h1.partition()
        pat = rf"event=backend_ejected backend={idle['name']} reason=hung .*heartbeat"
        hit = wait_for(lambda: re.search(pat, gw.log()), 15)
        took = None
        if hit:
            line = [l for l in gw.log().splitlines() if re.search(pat, l)][0]
            took = log_time(line) - t_cut
        fg.check(hit is not None and took < (HEARTBEAT_MS + GRACE_MS + 2500) / 1000 * S,
                 f"an idle partitioned host is ejected by the heartbeat "
                 f"(after {took if took is None else round(took, 2)} s; heartbeat "
                 f"{HEARTBEAT_MS} ms + grace {GRACE_MS} ms)")
        h1.heal()
        back = wait_for(lambda: any(b["address"] == idle["address"] and b["state"] == "ready"
                                    for b in cam_backends(gw)), 40)
        fg.check(back, "and back once healed")
        st, _, _ = gw.detect(fg.image())
        fg.check(st == 200, f"frames answered after ({st})")
        if fg._failures:
            print(gw.log()[-6000:])

if not fg._failures:
    shutil.rmtree(tmp, ignore_errors=True)
else:
    fg.log("backend logs kept in", tmp)
fg.finish()
