#!/usr/bin/env python3
"""Provider tiers (model key providers = local:1, ec2:3) against the fake EC2 (ec2fake.py):
- at start the one backend min_backends asks for is local (a child process), no instance is
  launched at the cloud;
- a burst fills the local tier, then bursts into EC2: 4 backends, 3 of them instances;
- idle: scale-in reaps the EC2 tier first, the local backend stays, the fake ends with no
  live instance;
- SIGTERM: exit 0, nothing left at the cloud."""
# ctest-timeout: 180
import atexit
import os
import secrets
import signal
import sys
import time

import fg

sys.path.insert(0, os.path.dirname(__file__))
import ec2fake  # noqa: E402

fake, pki, tmp = ec2fake.setup("fgt-tiers-", fg.SRC)
atexit.register(fake.close)


def kinds(gw):
    """(local, ec2) counts of the backends: an EC2 instance's id is i-..., a child's a pid."""
    bs = gw.backends()["backends"]
    ec2 = sum(1 for b in bs if str(b.get("instance", "")).startswith("i-"))
    return len(bs) - ec2, ec2


settings, env = ec2fake.gateway_settings(fake, pki, "tiers-" + secrets.token_hex(4),
                                         os.path.join(fg.BIN, "framegate-backend"),
                                         fg.free_port())
settings.update({
    "model.app.providers": "local:1, ec2:3", "min_backends": 1,
    "target_inflight_per_backend": 1, "scale_interval_ms": 250, "stable_window_ms": 3000,
    "panic_window_ms": 2000, "start_timeout_ms": 30000, "backend_args": "--simulate-ms 100",
})
gw = fg.Gateway(settings=settings, env=env)
gw.start()
try:
    fg.check(kinds(gw) == (1, 0), f"at start: one local backend, no cloud one ({kinds(gw)})")
    time.sleep(1.5)
    fg.check(fake.requests.get("RunInstances", 0) == 0 and not fake.alive(),
             "nothing launched at the cloud while the local tier suffices")

    load = fg.Load(gw, clients=12).start()
    full = fg.wait_for(lambda: fg.ready_count(gw) == 4, 60)
    k = kinds(gw)
    load.stop()
    fg.check(full and k == (1, 3), f"burst: the local tier, then 3 EC2 instances ({k})")
    fg.check(len(fake.alive()) == 3, f"the fake runs 3 instances ({len(fake.alive())})")
    fg.check(not load.failures(), f"0 failed frames in the burst ({load.statuses()})")

    # Idle: the cloud tier goes first; the local backend stays.
    back = fg.wait_for(lambda: kinds(gw) == (1, 0) and not fake.alive(), 40)
    fg.check(back, f"idle: back to the one local backend, the instances terminated "
                   f"({kinds(gw)}, {len(fake.alive())} alive at the fake)")
    fg.check("tier_burst" in gw.log(), "the burst into the next tier is logged (tier_burst)")
    b = gw.backends()
    fg.check(b["inflight"] == 0 and b["queued"] == 0,
             f"idle: nothing in flight or queued ({b['inflight']}, {b['queued']})")
    code = gw.stop(sig=signal.SIGTERM, timeout=30)
    fg.check(code == 0, f"SIGTERM: exit 0 ({code})")
    fg.check(fake.alive() == [], f"nothing left at the cloud ({fake.alive()})")
finally:
    if gw.proc is not None:
        gw.stop(sig=signal.SIGKILL, timeout=5)
fake.close()
fg.finish()
