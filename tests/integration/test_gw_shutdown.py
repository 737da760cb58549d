#!/usr/bin/env python3
"""Gateway shutdown: SIGTERM under load answers every request in flight, stops every
backend and exits 0; when the shutdown grace runs out and frames are answered 503 it exits 1;
a SIGKILLed gateway leaves no backend behind either."""
# ctest-timeout: 90
import os
import signal
import time

import fg

S = fg.SLOW

with fg.Gateway(settings={"backends": 3}, simulate_ms=200) as gw:
    load = fg.Load(gw, clients=30).start()
    time.sleep(1.5)
    pids = gw.backend_pids()
    fg.check(len(pids) == 3, f"3 backend processes ({pids})")
    load.stopping.set()  # clients send nothing new; what is in flight must be answered
    t_term = time.time()
    code = gw.stop(signal.SIGTERM)
    load.join(30)
    st = load.statuses()
    fg.check(code == 0, f"gateway exits 0 after SIGTERM (got {code})")
    # A client past its stopping check when it was set may still send once, after SIGTERM:
    # that request is not in flight, and its 503 is right. Those started before SIGTERM count.
    inflight = [r for r in load.results if r[3] < t_term]
    bad = [r[:3] for r in inflight if r[0] != 200]
    late = len(load.results) - len(inflight)
    fg.check(len(inflight) >= 30 and not bad, f"every request in flight answered ({st}; "
             f"{len(inflight)} sent before SIGTERM, {late} after; failed: {bad[:3]})")
    fg.check(all(not fg.alive(p) for p in pids), "no backend process left")

# Frames that take longer than the grace: answered 503, and the exit status says so (issue 11,
# item 10: it used to be 0).
with fg.Gateway(settings={"backends": 1, "shutdown_grace_ms": 300}, simulate_ms=3000) as gw:
    load = fg.Load(gw, clients=3).start()
    # All three frames at the gateway before SIGTERM (was a fixed 0.5 s: a late one is refused
    # at once, or cannot connect, which is right but not what is tested here).
    fg.wait_for(lambda: (lambda b: b["queued"] + b["inflight"] == 3)(gw.backends()), 10)
    load.stopping.set()
    code = gw.stop(signal.SIGTERM)
    load.join(30)
    st = load.statuses()
    fg.check(code == 1, f"gateway exits 1 when the shutdown grace expired (got {code})")
    fg.check(st.get(503, 0) >= 1 and not any(str(k).startswith("exc") for k in st),
             f"the frames still out were answered 503 ({st})")
    fg.check("abandoned=" in gw.log(), "the exit logs the frames answered 503")

with fg.Gateway(settings={"backends": 2}, simulate_ms=10) as gw:
    pids = gw.backend_pids()
    fg.check(len(pids) == 2, f"2 backend processes ({pids})")
    gw.proc.kill()
    gw.proc.wait()
    t0 = time.time()
    while time.time() - t0 < 5 * S and any(fg.alive(p) for p in pids):
        time.sleep(0.05)
    fg.check(all(not fg.alive(p) for p in pids),
             "backends exit by themselves when the gateway is SIGKILLed")

fg.finish()
