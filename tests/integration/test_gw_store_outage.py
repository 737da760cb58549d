#!/usr/bin/env python3
"""The S3 store goes away under load and comes back; then the gateway is SIGKILLed while
writes wait in the spool. Nothing is lost:
  1. 4 clients post frames; the S3 server (s3fake.py, signatures checked) is stopped for ~3 s:
     every answer is still 200 and the spool grows; the server comes back on the same port:
     the spool drains and the bucket holds every key an answer carried.
  2. The server is stopped again, frames spool, the gateway is SIGKILLed (no shutdown code
     runs); a new gateway on the same spool_dir, with the server back, sends them all."""
# ctest-timeout: 150
import json
import os
import shutil
import signal
import tempfile
import threading
import time

import fg
from s3fake import S3Fake

root = tempfile.mkdtemp(prefix="fgt-s3out-")
s3 = S3Fake(os.path.join(root, "s3"))
os.makedirs(s3.root)
settings = {"backends": 1, "backend_concurrency": 4, "store": "s3://test-bucket/cams",
            "s3_endpoint": f"http://127.0.0.1:{s3.port}", "s3_path_style": "on",
            "s3_access_key": "S3RVER", "s3_secret_key": "S3RVER",
            "spool_dir": os.path.join(root, "spool"), "store_retry_initial_ms": 100,
            "store_retry_max_ms": 500, "store_timeout_ms": 3000}
img = fg.image("dog.jpg")


class Clients:
    """Closed-loop clients that keep every answer's stored keys."""

    def __init__(self, gw, n):
        self.gw, self.stop_ev, self.lock = gw, threading.Event(), threading.Lock()
        self.statuses, self.keys = {}, set()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(n)]
        for t in self.threads:
            t.start()

    def run(self, i):
        c = self.gw.conn(30)
        while not self.stop_ev.is_set():
            try:
                st, _, body = self.gw.detect(img, f"?camera=cam{i}", conn=c)
            except OSError as e:
                st, body = "exc:" + str(e), b""
                c.close()
                c = self.gw.conn(30)
            with self.lock:
                self.statuses[st] = self.statuses.get(st, 0) + 1
                if st == 200:
                    self.keys |= set(json.loads(body)["stored"].values())
        c.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
        return self


def storage(gw):
    return gw.json("/v1/storage")


def wait(cond, timeout):
    deadline = time.time() + timeout * fg.SLOW
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    return cond()


try:
    s3.start()
    with fg.Gateway(settings=settings, simulate_ms=2) as gw:
        load = Clients(gw, 4)
        time.sleep(1.5)
        before = len(s3.keys())
        fg.check(before > 0, f"objects reach the bucket while it is up ({before})")
        s3.stop()
        t_down = time.time()
        peak = wait(lambda: (lambda s: s if s["spool"]["objects"] >= 50 else None)(storage(gw)),
                    20)
        fg.check(peak is not None and peak["up"] is False,
                 f"with the store down the spool grows: {peak and peak['spool']}")
        time.sleep(max(0, 3 - (time.time() - t_down)))
        s = storage(gw)
        st, _, _ = gw.request("GET", "/readyz")
        fg.check(st == 200, f"/readyz stays 200 during the outage (got {st})")
        spooled_at_restart = s["spool"]["objects"]
        s3.start()
        t_up = time.time()
        time.sleep(1.5)
        load.stop()
        fg.check(set(load.statuses) == {200},
                 f"every answer 200 through the outage: {load.statuses}")
        drained = wait(lambda: (lambda s: s if s["spool"]["objects"] == 0 and s["queued"] == 0
                                and s["inflight"] == 0 else None)(storage(gw)), 60)
        fg.check(drained is not None and drained["up"] is True,
                 f"the spool drains once the store is back ({spooled_at_restart} objects, "
                 f"{time.time() - t_up:.1f} s): {drained}")
        fg.check(drained is not None and sum(drained["dropped"].values()) == 0,
                 "nothing dropped")
        want = {"cams/" + k for k in load.keys}
        have = s3.keys()
        fg.check(len(want) > 100 and want <= have,
                 f"the bucket holds every one of the {len(want)} keys answered "
                 f"(missing {len(want - have)})")

    # 2. SIGKILL while spooling
    s3.stop()
    with fg.Gateway(settings=settings, simulate_ms=2) as gw:
        keys = set()
        for i in range(20):
            st, _, body = gw.detect(img, "?camera=killed")
            fg.check(st == 200, f"frame {i} answered 200 with the store down") if st != 200 else None
            keys |= set(json.loads(body)["stored"].values())
        s = wait(lambda: (lambda s: s if s["spool"]["objects"] == 40 else None)(storage(gw)), 20)
        fg.check(s is not None, f"the 40 writes are in the spool before the kill: {storage(gw)}")
        gw.stop(sig=signal.SIGKILL)
    files = [f for f in os.listdir(settings["spool_dir"]) if f.endswith(".obj")]
    fg.check(len(files) == 40, f"40 spool files survive the SIGKILL (got {len(files)})")
    s3.start()
    with fg.Gateway(settings=settings, simulate_ms=2) as gw:
        s = wait(lambda: (lambda s: s if s["spool"]["objects"] == 0 and s["inflight"] == 0
                          else None)(storage(gw)), 30)
        fg.check(s is not None and s["written"] >= 40,
                 f"the next gateway sends the spool left behind: {storage(gw)}")
    have = s3.keys()
    fg.check({"cams/" + k for k in keys} <= have,
             f"all 40 objects of the killed gateway are in the bucket "
             f"(missing {len({'cams/' + k for k in keys} - have)})")
    fg.check(os.listdir(settings["spool_dir"]) == [], "the spool directory is empty")
finally:
    s3.stop()
    shutil.rmtree(root, ignore_errors=True)
fg.finish()
