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
# 3000 ms frames against the 4000 ms stable window: the drain comes ~1 s into the draining
# backend's frame, leaving ~2 s for the burst to cancel it (2500 ms left ~1 s, and a loaded
# machine's slower burst start could lose that race although the gateway was right).
settings = {"min_backends": 1, "max_backends": 2, "backend_concurrency": 2,
            "target_inflight_per_backend": 2, "scale_interval_ms": 200,
            "stable_window_ms": 4000, "panic_window_ms": 600}
with fg.Gateway(settings=settings, simulate_ms=3000) as gw:
    big = fg.Load(gw, clients=4).start()
    fg.wait_for(lambda: fg.ready_count(gw) == 2, 10)
    fg.check(len(gw.backends()["backends"]) == 2, "scaled to 2 under 4 clients")
    pids = {b["name"]: b["instance"] for b in gw.backends()["backends"]}
    # Let the big load finish, then keep one request on each backend: with the load at one
    # backend's worth, the stable window passes and one of them must drain its request.
    big.stop()
    small = fg.Load(gw, clients=2).start(spawn_per_s=20)

    # The drain decision from the gateway's log: a poll of /v1/backends could miss a short
    # "draining" (a backend with nothing in flight goes straight to stopping).
    def drained():
        m = re.search(r" event=scale direction=down reason=idle backend=(\S+) ", gw.log())
        return m and m.group(1)
    victim = fg.wait_for(drained, 20)
    fg.check(victim is not None, f"load fell to one backend's worth: one backend drains ({victim})")
    starts_before = gw.log().count("event=backend_starting")
    burst = fg.Load(gw, clients=4).start()

    def back_ready():
        b = {b["name"]: b for b in gw.backends()["backends"]}.get(victim)
        return b is not None and b["state"] == "ready" and b
    # bounded wait, not a fixed 3 s poll: the autoscaler's tick under a loaded machine
    again = fg.wait_for(back_ready, 5)
    fg.check(again and again["instance"] == pids.get(victim),
             f"the draining backend is back to ready (same pid: {again and again['instance']}, "
             f"was {pids.get(victim)})")
    fg.check(f"reason=drain_cancelled backend={victim} " in gw.log(), "logged as drain_cancelled")
    burst.stop()
    small.stop()
    # Counted over the whole burst (was 0.5 s after the reuse): no backend was started for it.
    fg.check(gw.log().count("event=backend_starting") == starts_before, "no new backend spawned")
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
