#!/usr/bin/env python3
"""200 concurrent keep-alive clients posting 5 frames each, all answered 200; then the same
with a backend SIGKILLed in the middle: its requests are retried and still all answered."""
# ctest-timeout: 240
import os
import subprocess
import signal
import time

import fg

# fg.Load's frames name cameras (cam-N): camera_max_age_ms = 0, so that a frame that waits
# behind the burst is served late rather than skipped; this test counts every frame served.
with fg.Gateway(settings={"backends": 2, "max_connections": 512, "camera_max_age_ms": 0},
                simulate_ms=2) as gw:
    load = fg.Load(gw, clients=200, per_client=5).start()
    load.join(120)
    st = load.statuses()
    fg.check(len(load.results) == 1000, f"1000 requests answered (got {len(load.results)})")
    fg.check(st.get(200, 0) == 1000, f"all 200 ({st})")
    m = gw.metrics()
    served = sum(b["served"] for b in gw.backends()["backends"])
    fg.check(served >= 1000, f"backends served them ({served})")
    n = fg.metric_value(m, "framegate_requests_total", {"route": "detect", "code": "200"})
    fg.check(n == 1000, f"framegate_requests_total counts the 1000 frames ({n})")
    fg.check(fg.metric_value(m, "framegate_queue_wait_seconds_count") == 1000,
             "queue wait histogram has one sample per frame")
    if os.path.exists("/usr/bin/promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=m.encode(),
                           capture_output=True)
        fg.check(r.returncode == 0, f"/metrics passes promtool check metrics {r.stdout[:300]!r} {r.stderr[:300]!r}")

with fg.Gateway(settings={"backends": 3, "max_connections": 512, "retries": 3},
                simulate_ms=30) as gw:
    load = fg.Load(gw, clients=200, per_client=5).start()
    # Kill one backend once requests are flowing.
    deadline = time.time() + 20 * fg.SLOW
    while len(load.results) < 150 and time.time() < deadline:
        time.sleep(0.01)
    victim = [b for b in gw.backends()["backends"] if b["state"] == "ready"][0]
    fg.check(victim["inflight"] >= 0, f"victim {victim['name']} instance {victim['instance']}")
    fg.check(victim.get("provider") == "local" and "pid" not in victim,
             f"a backend reports its provider and instance, not a pid ({victim})")
    # The local provider's instance id is the backend's process id.
    os.kill(int(victim["instance"]), signal.SIGKILL)
    load.join(120)
    st = load.statuses()
    fg.check(len(load.results) == 1000, f"1000 requests answered (got {len(load.results)})")
    fg.check(st.get(200, 0) == 1000, f"all 200 despite the SIGKILL ({st})")
    # a replacement starts (restarted to keep the fixed pool at 3)
    deadline = time.time() + 10 * fg.SLOW
    while time.time() < deadline:
        bs = gw.backends()["backends"]
        if sum(1 for b in bs if b["state"] == "ready") == 3:
            break
        time.sleep(0.1)
    names = sorted(b["name"] for b in bs)
    fg.check(sum(1 for b in bs if b["state"] == "ready") == 3,
             f"the killed backend was replaced ({[(b['name'], b['state']) for b in bs]})")
    fg.check(victim["name"] in names, f"its name {victim['name']} is reused ({names})")
    fg.check(str(victim["instance"]) not in [b["instance"] for b in bs], "by a new process")
    fg.check("reason=crash" in gw.log(), "the crash is logged as a scale event")

fg.finish()
