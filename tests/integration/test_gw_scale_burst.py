#!/usr/bin/env python3
"""Autoscaler: a burst scales up fast with no failures; idleness scales back to min after
the stable window; min 0 scales to zero and the next request waits for a cold start."""
# ctest-timeout: 120
import json
import time

import fg

S = fg.SLOW

# Burst: 40 concurrent clients, min 1, max 4, target 1, 200 ms backends.
settings = {"min_backends": 1, "max_backends": 4, "target_inflight_per_backend": 1,
            "scale_interval_ms": 250, "stable_window_ms": 4000, "panic_window_ms": 2000}
with fg.Gateway(settings=settings, simulate_ms=200) as gw:
    fg.check(len(gw.backends()["backends"]) == 1, "starts with min=1 backend")
    t0 = time.time()
    load = fg.Load(gw, clients=40).start()
    reached = None
    while time.time() - t0 < 10 * S:
        b = gw.backends()
        if sum(1 for x in b["backends"] if x["state"] == "ready") == 4:
            reached = time.time() - t0
            break
        time.sleep(0.05)
    fg.check(reached is not None and reached < 5 * S, f"4 backends ready within 5 s (took {reached})")
    time.sleep(1)
    load.stop()
    st = load.statuses()
    fg.check(not load.failures(), f"0 failures in the burst ({st})")
    fg.check(st.get(200, 0) > 50, f"{st.get(200, 0)} frames answered")
    names = sorted(x["name"] for x in gw.backends()["backends"])
    fg.check(names == [f"app-instance{i}" for i in range(1, 5)], f"names app-instance1..4 ({names})")
    m = gw.metrics()
    fg.check(fg.metric_value(m, "framegate_scale_events_total", {"direction": "up"}) >= 3,
             "scale-up events counted in /metrics")

    # Idle: back to min within the stable window plus slack.
    t0 = time.time()
    back = None
    while time.time() - t0 < 15 * S:
        b = gw.backends()
        if len(b["backends"]) == 1 and b["backends"][0]["state"] == "ready":
            back = time.time() - t0
            break
        time.sleep(0.1)
    fg.check(back is not None and back < (4 + 3) * S, f"back to min=1 after idling (took {back})")
    fg.check(back is None or back >= 3.0, f"not before the stable window ({back})")
    fg.check("reason=idle" in gw.log(), "scale-down logged with reason=idle")

# Scale to zero and back.
settings = {"min_backends": 0, "max_backends": 2, "scale_interval_ms": 250,
            "stable_window_ms": 1500, "panic_window_ms": 1000}
with fg.Gateway(settings=settings, simulate_ms=20, init_delay_ms=1000, wait_ready=False) as gw:
    t0 = time.time()
    while time.time() - t0 < 10 * S and gw.backends()["backends"]:
        time.sleep(0.1)
    fg.check(gw.backends()["backends"] == [], "min 0: no backend while idle")
    # Ready: a frame sent now is served (it starts a backend). A 503 here would keep a load
    # balancer or a Kubernetes probe from ever sending the frame that wakes the pool.
    st, _, body = gw.request("GET", "/readyz")
    fg.check(st == 200 and b"scaled to zero" in body and json.loads(body)["backends_ready"] == 0,
             f"/readyz 200 while scaled to zero ({st} {body!r})")
    t0 = time.time()
    st, _, body = gw.detect(fg.image(), timeout=30)
    took = time.time() - t0
    fg.check(st == 200, f"first request after idle answered 200 (got {st} {body[:100]!r})")
    fg.check(took >= 0.9, f"it waited for the cold start ({took:.2f} s)")
    t0 = time.time()
    while time.time() - t0 < 10 * S and gw.backends()["backends"]:
        time.sleep(0.1)
    fg.check(gw.backends()["backends"] == [], "scaled back to zero")

fg.finish()
