#!/usr/bin/env python3
"""A hung backend (issue 11, item 7): SIGSTOP one of two backends under load. It is suspected
within the bound derived from the model's service time (no new frames; the frames it held
are retried on the other), every frame is answered 200 and none later than the deadline, and
once it has ignored its ping for hung_grace_ms it is killed and replaced (counted, logged)."""
# ctest-timeout: 120
import os
import signal
import time

import fg

S = fg.SLOW
HUNG_MIN_MS = 500   # the bound: max(hung_min_ms, hung_factor x ~20 ms) = 500 ms
GRACE_MS = 1500
DEADLINE_MS = 5000

settings = {"backends": 2, "hung_factor": 10, "hung_min_ms": HUNG_MIN_MS,
            "hung_grace_ms": GRACE_MS, "deadline_ms": DEADLINE_MS, "retries": 2}
victim_pid = None
with fg.Gateway(settings=settings, simulate_ms=20) as gw:
    try:
        load = fg.Load(gw, clients=8).start()
        deadline = time.time() + 20 * S
        while len(load.results) < 100 and time.time() < deadline:
            time.sleep(0.01)
        victim = [b for b in gw.backends()["backends"] if b["state"] == "ready"][0]
        victim_pid = int(victim["instance"])  # the local provider's instance id is the pid
        t_stop = time.time()
        os.kill(victim_pid, signal.SIGSTOP)

        # Suspected within the bound (plus the 100 ms watch interval and slack), timed by the
        # gateway's own log line (ts= is wall-clock ms): polling /v1/backends missed the state
        # on a slow machine, and the poll's own delay counted against the bound.
        def suspect_ts():
            ts = fg.log_times(gw.log(), "backend_suspect", f"backend={victim['name']} ")
            return ts[0] if ts else None
        t_suspect = fg.wait_for(suspect_ts, 5)
        waited = (t_suspect - t_stop) if t_suspect else None
        fg.check(t_suspect is not None and 0 <= waited < (HUNG_MIN_MS + 600) / 1000 * S,
                 f"{victim['name']} suspected within the bound (after {waited} s)")

        # Replaced after the grace: a new ready backend, the stopped one killed.
        t_end = time.time() + (GRACE_MS / 1000 + 10) * S
        replaced = False
        while time.time() < t_end:
            bs = gw.backends()["backends"]
            ready = [b for b in bs if b["state"] == "ready"]
            if len(ready) == 2 and all(b["instance"] != victim["instance"] for b in ready):
                replaced = True
                break
            time.sleep(0.05)
        fg.check(replaced, f"the hung backend was replaced ({[(b['name'], b['state']) for b in bs]})")
        fg.check(not fg.alive(victim_pid), f"the hung process {victim_pid} was killed")
        time.sleep(0.5)
        load.stopping.set()
        load.join(60)
        st = load.statuses()
        fg.check(st.get(200, 0) == len(load.results) and len(load.results) > 200,
                 f"every frame answered 200 ({st})")
        slowest = max(r[1] for r in load.results)
        fg.check(slowest < DEADLINE_MS / 1000,
                 f"no frame answered later than the deadline (slowest {slowest:.2f} s)")
        log = gw.log()
        fg.check("event=backend_suspect" in log and "reason=hung" in log,
                 "suspicion and ejection are logged")
        m = gw.metrics()
        n = fg.metric_value(m, "framegate_backend_ejections_total", {"reason": "hung"})
        fg.check(n == 1, f"framegate_backend_ejections_total{{reason=hung}} is 1 ({n})")
    finally:
        if victim_pid is not None and fg.alive(victim_pid):
            os.kill(victim_pid, signal.SIGCONT)
            os.kill(victim_pid, signal.SIGKILL)

fg.finish()
