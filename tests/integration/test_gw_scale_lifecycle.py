#!/usr/bin/env python3
"""Autoscaler lifecycle: slow model loads under a burst, a drain cancelled by new load, a
backend that crashes at start (exponential backoff, /readyz explains)."""
# ctest-timeout: 150
import json
import re
import time

import fg

S = fg.SLOW

# Slow init (3 s) under a burst: nobody fails, they wait in the queue.
settings = {"min_backends": 1, "max_backends": 3, "scale_interval_ms": 250,
            "stable_window_ms": 5000, "panic_window_ms": 2000}
with fg.Gateway(settings=settings, simulate_ms=100, init_delay_ms=3000) as gw:
    load = fg.Load(gw, clients=20, per_client=15).start()
    load.join(90)
    st = load.statuses()
    fg.check(len(load.results) == 300 and not load.failures(),
             f"slow init under a burst: 300 answered, 0 failures ({st})")
    log = gw.log()
    fg.check(log.count("event=backend_ready") >= 3, "new backends came up while requests waited")

# Drain cancelled by a new burst: the draining backend is reused, nothing new is spawned.
settings = {"min_backends": 1, "max_backends": 2, "backend_concurrency": 2,
            "target_inflight_per_backend": 2, "scale_interval_ms": 200,
            "stable_window_ms": 4000, "panic_window_ms": 600}
with fg.Gateway(settings=settings, simulate_ms=2500) as gw:
    big = fg.Load(gw, clients=4).start()
    t0 = time.time()
    while time.time() - t0 < 10 * S:
        if sum(1 for b in gw.backends()["backends"] if b["state"] == "ready") == 2:
            break
        time.sleep(0.05)
    fg.check(len(gw.backends()["backends"]) == 2, "scaled to 2 under 4 clients")
    # Let the big load finish, then keep one request on each backend: with the load at one
    # backend's worth, the stable window passes and one of them must drain its request.
    big.stop()
    small = fg.Load(gw, clients=2).start(spawn_per_s=20)
    draining = None
    t0 = time.time()
    while time.time() - t0 < 20 * S and draining is None:
        for b in gw.backends()["backends"]:
            if b["state"] == "draining":
                draining = b
        time.sleep(0.02)
    fg.check(draining is not None, "load fell to one backend's worth: one backend drains")
    starts_before = gw.log().count("event=backend_starting")
    burst = fg.Load(gw, clients=4).start()
    t0 = time.time()
    reused = False
    while time.time() - t0 < 3 * S:
        bs = {b["name"]: b for b in gw.backends()["backends"]}
        if draining and draining["name"] in bs and bs[draining["name"]]["state"] == "ready":
            reused = bs[draining["name"]]["instance"] == draining["instance"]
            break
        time.sleep(0.02)
    fg.check(reused, "the draining backend is back to ready (same pid)")
    fg.check("reason=drain_cancelled" in gw.log(), "logged as drain_cancelled")
    time.sleep(0.5)
    fg.check(gw.log().count("event=backend_starting") == starts_before, "no new backend spawned")
    burst.stop()
    small.stop()
    fg.check(not big.failures() and not small.failures() and not burst.failures(),
             "0 failures throughout")

# A backend command that exits at once: backoff, not a fork loop; /readyz explains.
settings = {"min_backends": 1, "max_backends": 2, "backend_command": "/bin/false",
            "scale_interval_ms": 200, "backoff_initial_ms": 500, "backoff_max_ms": 8000}
with fg.Gateway(settings=settings, wait_ready=False) as gw:
    time.sleep(10)
    log = gw.log()
    spawns = log.count("event=backend_starting")
    fg.check(1 <= spawns <= 6, f"{spawns} spawns in 10 s (backoff, no fork loop)")
    delays = [int(x) for x in re.findall(r"reason=backoff .*?retry_in_ms=(\d+)", log)]
    fg.check(len(delays) >= 3 and delays == sorted(delays) and delays[-1] > delays[0],
             f"backoff grows: {delays}")
    st, hdrs, body = gw.request("GET", "/readyz")
    fg.check(st == 503 and b"exited" in body, f"/readyz explains: {body[:160]!r}")
    b = gw.backends()
    fg.check(b["last_error"] and "exited" in b["last_error"], f"/v1/backends says why: {b['last_error']}")
    st, hdrs, body = gw.detect(fg.image())
    fg.check(st == 503 and "retry-after" in hdrs, f"a frame now gets 503 + Retry-After (got {st})")

fg.finish()
