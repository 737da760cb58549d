#!/usr/bin/env python3
"""Gateway shutdown: SIGTERM under load answers every request in flight, stops every
backend and exits 0; a SIGKILLed gateway leaves no backend behind either."""
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
    code = gw.stop(signal.SIGTERM)
    load.join(30)
    st = load.statuses()
    fg.check(code == 0, f"gateway exits 0 after SIGTERM (got {code})")
    fg.check(not load.failures(), f"every request in flight answered ({st})")
    fg.check(all(not fg.alive(p) for p in pids), "no backend process left")

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
