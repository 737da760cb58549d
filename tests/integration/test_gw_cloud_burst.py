#!/usr/bin/env python3
"""A burst on the cloud: the ec2 provider against the fake EC2 (ec2fake.py: every SigV4
signature checked, each instance a real framegate-backend joining over mutual TLS) scales
1 -> 6 instances under 18 closed-loop clients; no frame is lost (every answer a 200, or a
clear 503/504 with its JSON error: no reset connection, no other status); once the load stops
the pool is back to min_backends = 1 and the fake shows the other 5 terminated, within 90 s.
Reports the time from the burst to the first frame served by a new instance."""
# ctest-timeout: 240
import atexit
import json
import os
import secrets
import signal
import sys
import time

import fg

sys.path.insert(0, os.path.dirname(__file__))
import ec2fake  # noqa: E402

S = fg.SLOW
fake, pki, tmp = ec2fake.setup("fgt-burst-", fg.SRC)
atexit.register(fake.close)


settings, env = ec2fake.gateway_settings(fake, pki, "burst-" + secrets.token_hex(4),
                                         os.path.join(fg.BIN, "framegate-backend"),
                                         fg.free_port())
settings.update({
    "model.app.provider": "ec2", "min_backends": 1, "max_backends": 6,
    "target_inflight_per_backend": 1, "scale_interval_ms": 250, "stable_window_ms": 3000,
    "panic_window_ms": 2000, "start_timeout_ms": 30000, "backend_args": "--simulate-ms 100",
})
gw = fg.Gateway(settings=settings, env=env, wait_ready=False)
gw.start()
try:
    fg.check(fg.wait_for(lambda: fg.ready_count(gw) == 1, 30), "min_backends=1: one instance ready")
    first = gw.backends()["backends"][0]["name"]

    t0 = time.time()
    load = fg.Load(gw, clients=18).start()
    new_served = None
    peak = 0
    end = time.time() + 60 * S
    while time.time() < end:
        bs = gw.backends()["backends"]
        peak = max(peak, sum(1 for b in bs if b["state"] == "ready"))
        if new_served is None and any(b["name"] != first and b["served"] > 0 for b in bs):
            new_served = time.time() - t0
        if peak == 6 and new_served is not None:
            break
        time.sleep(0.1)
    time.sleep(2)  # frames on all six
    load.stop()
    fg.check(peak == 6, f"the burst scaled 1 -> 6 instances ({peak})")
    fg.check(len(fake.alive()) == 6, f"the fake runs 6 instances ({len(fake.alive())})")
    fg.log(f"burst -> first frame served by a new instance: {new_served} s")
    fg.check(new_served is not None, f"new instances served frames ({new_served} s after the "
                                     f"burst began)")
    st = load.statuses()
    bad = []
    for r in load.failures():
        if r[0] in (503, 504):
            try:
                if json.loads(r[2]).get("error"):
                    continue
            except (ValueError, TypeError, AttributeError):
                pass
        bad.append(r[0])
    fg.check(st.get(200, 0) > 0 and not bad,
             f"no frame lost: answered, or a clear 503/504 ({st}, unclear: {bad[:5]})")

    # Load stops: back to min_backends, the others terminated at the cloud, bounded in time.
    t1 = time.time()
    back = fg.wait_for(lambda: len(gw.backends()["backends"]) == 1 and len(fake.alive()) == 1, 90)
    took = time.time() - t1
    fg.check(back and took < 90 * S, f"back to 1 backend and 1 live instance in {took:.1f} s")
    st, _, _ = gw.detect(fg.image())
    fg.check(st == 200, f"the remaining instance serves ({st})")
    code = gw.stop(sig=signal.SIGTERM, timeout=30)
    fg.check(code == 0, f"SIGTERM: exit 0 ({code})")
    fg.check(fake.alive() == [], f"nothing left at the cloud ({fake.alive()})")
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)
fake.close()
fg.finish()
