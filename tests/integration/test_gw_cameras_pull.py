#!/usr/bin/env python3
"""Pull cameras: the gateway fetches an MJPEG stream and polls a JPEG snapshot URL itself
(local servers serving Debian's darknet JPEGs). Results come on each camera's SSE stream in
order; a slow backend gets the newest frame, not a backlog; a camera that drops is shown down
with its error and comes back up when the server returns; a malformed or oversized part is
refused with a clear camera error while the gateway and the other camera keep going."""
# ctest-timeout: 120
import os
import shutil
import tempfile
import time

import fg
from camserve import CamServer, Events

S = fg.SLOW
SVC_MS = int(200 * S)
store = tempfile.mkdtemp(prefix="fgt-pull-store-")

mj = CamServer(fps=20 / S).start()
snap = CamServer().start()
settings = {
    "backends": 1,
    "camera.front.url": f"http://127.0.0.1:{mj.port}/video.mjpg",
    "camera.front.mode": "mjpeg",
    "camera.front.max_frame_bytes": "2M",
    "camera.yard.url": f"http://127.0.0.1:{snap.port}/snap.jpg",
    "camera.yard.mode": "snapshot",
    "camera.yard.fps": 4 / S,
    # cameras that never come up: a path the server does not have, a port nobody listens on
    "camera.missing.url": f"http://127.0.0.1:{mj.port}/nope.mjpg",
    "camera.gone.url": f"http://127.0.0.1:{fg.free_port()}/video.mjpg",
    "store": f"dir:{store}",
}


def cams(gw):
    return {c["id"]: c for c in gw.json("/v1/cameras")["cameras"]}


def wait_for(gw, what, cond, timeout):
    deadline = time.time() + timeout * S
    while time.time() < deadline:
        c = cams(gw)
        if cond(c):
            return c
        time.sleep(0.1)
    fg.log("  cameras:", cams(gw))
    return None


def ages(events):
    return sorted(e[1]["ts_answer"] - e[1]["ts"] for e in events)


with fg.Gateway(settings=settings, simulate_ms=SVC_MS) as gw:
    # Pull cameras are listed from the start, before any frame.
    c = cams(gw)
    fg.check(set(c) >= {"front", "yard"} and c["front"]["source"] == "pull" and
             c["front"]["pull"]["mode"] == "mjpeg" and c["yard"]["pull"]["mode"] == "snapshot",
             "both pull cameras listed by /v1/cameras with their mode")
    ev_front, ev_yard = Events(gw.port, "front"), Events(gw.port, "yard")
    t0 = time.time()
    max_queued = 0
    while time.time() - t0 < 6 * S:
        max_queued = max(max_queued, gw.backends()["queued"])
        time.sleep(0.1)
    c = cams(gw)
    f, y = c["front"], c["yard"]
    fg.log("front:", f["state"], f["pull"], f["frames"], f["age_ms"])
    fg.log("yard:", y["state"], y["pull"], y["frames"])
    fg.check(f["state"] == "up" and y["state"] == "up", "both cameras up")
    for name, words in (("missing", "HTTP 404"), ("gone", "onnect")):
        p = c[name]["pull"]
        fg.check(c[name]["state"] == "down" and words in (p["last_error"] or "") and
                 p["connects"] >= 3 and p["retry_ms"] > 250,
                 f"{name}: down, {p['last_error']!r}, retried with backoff "
                 f"({p['connects']} connects, next in {p.get('retry_ms')} ms)")
    fg.check(f["pull"]["fps"] >= 10 / S, f"the MJPEG stream is read at its rate "
                                          f"({f['pull']['fps']} fps of 20)")
    fg.check(2 / S <= y["pull"]["fps"] <= 5 / S, f"the snapshot is polled at 4 fps "
                                                   f"({y['pull']['fps']})")
    fg.check(max_queued <= 2, f"never more than one waiting frame per camera (max {max_queued})")
    fg.check(f["frames"]["superseded"] > 0,
             f"the slow backend left frames superseded ({f['frames']['superseded']})")
    for name, ev in (("front", ev_front), ("yard", ev_yard)):
        ids = [e[0] for e in ev.events]
        fg.check(len(ids) >= 5 and all(a < b for a, b in zip(ids, ids[1:])),
                 f"{name}: {len(ids)} results on its SSE stream, in strictly increasing seq")
        fg.check(all(e[1]["camera"] == name and e[1]["seq"] == e[0] and
                     e[1]["width"] > 0 for e in ev.events),
                 f"{name}: each event is a detection of one of its frames")
    m = gw.metrics()
    fg.check(fg.metric_value(m, "framegate_camera_pull_up", {"camera": "front"}) == 1 and
             fg.metric_value(m, "framegate_camera_pull_up", {"camera": "gone"}) == 0 and
             fg.metric_value(m, "framegate_camera_pull_errors_total", {"camera": "gone"}) >= 3,
             "metrics: framegate_camera_pull_up and _errors_total per pull camera")
    # Kept like pushed frames: CAMERA/YYYY/MM/DD/HH/CAMERA-<us>-<seq>.{jpg,json}
    time.sleep(0.5)
    kept = {}
    for d, _, files in os.walk(store):
        for name in files:
            cam = os.path.relpath(d, store).split(os.sep)[0]
            kept.setdefault(cam, []).append(name)
    for name in ("front", "yard"):
        files = kept.get(name, [])
        jpgs = [x for x in files if x.endswith(".jpg")]
        jsons = [x for x in files if x.endswith(".json")]
        # (writes are asynchronous: a pair may be half written at the moment of listing)
        fg.check(len(jpgs) >= 3 and abs(len(jsons) - len(jpgs)) <= 2,
                 f"{name}: its answered frames kept in the store ({len(jpgs)} frames + answers)")
    # Freshness: answered frames are as old as one wait plus one service, whatever ran
    # before; a backlog would grow by ~16 frames a second at 20 fps against ~2.5 served.
    a = ages(ev_front.events)
    p95 = a[int(len(a) * 0.95) - 1] if a else None
    late = [e[1]["ts_answer"] - e[1]["ts"] for e in ev_front.events[-5:]]
    fg.check(a and p95 <= 4 * SVC_MS + 300 * S,
             f"front: frame age at answer p95 {p95} ms (service {SVC_MS} ms): the newest frame")
    fg.check(late and max(late) <= 4 * SVC_MS + 300 * S,
             f"front: the last answers are as fresh as the first ({late})")

    # ---- the MJPEG server goes away, then comes back ----
    errors0 = f["pull"]["errors"]
    mj.stop()
    c = wait_for(gw, "down", lambda c: c["front"]["state"] == "down", 10)
    fg.check(c is not None and c["front"]["pull"]["last_error"] and
             c["front"]["pull"]["errors"] > errors0,
             f"front shown down with its error "
             f"({c and c['front']['pull']['last_error']!r})")
    n_yard = len(ev_yard.events)
    time.sleep(1 * S)
    fg.check(len(ev_yard.events) > n_yard, "yard keeps being served while front is down")
    mj = CamServer(fps=20 / S, port=mj.port).start()
    n_front = len(ev_front.events)
    c = wait_for(gw, "up", lambda c: c["front"]["state"] == "up", 12)
    fg.check(c is not None, "front up again once its server is back")
    deadline = time.time() + 5 * S
    while len(ev_front.events) <= n_front + 3 and time.time() < deadline:
        time.sleep(0.1)
    ids = [e[0] for e in ev_front.events]
    fg.check(len(ids) > n_front + 3 and all(a < b for a, b in zip(ids, ids[1:])),
             f"front's results continue on the same SSE stream, in order "
             f"({len(ids) - n_front} new)")

    # ---- bad parts: refused with the reason, the camera reconnects ----
    for bad, words in (("declared", "over the limit"), ("notjpeg", "not a JPEG"),
                       ("oversized", "over the limit")):
        errors0 = cams(gw)["front"]["pull"]["errors"]
        mj.bad = bad
        c = wait_for(gw, bad, lambda c: c["front"]["pull"]["errors"] > errors0, 8)
        err = c and c["front"]["pull"]["last_error"]
        fg.check(c is not None and words in err, f"a '{bad}' part: camera error {err!r}")
        st, _, _ = gw.request("GET", "/healthz")
        fg.check(st == 200, f"the gateway still serves after the '{bad}' part")
        c = wait_for(gw, "up", lambda c: c["front"]["state"] == "up", 10)
        fg.check(c is not None, f"front reconnects after the '{bad}' part")
    n_front = len(ev_front.events)
    time.sleep(1.5 * S)
    fg.check(len(ev_front.events) > n_front, "front results flow again after the bad parts")
    ev_front.close()
    ev_yard.close()
    code = gw.stop()
    fg.check(code == 0, f"the gateway exits 0 on SIGTERM with pulls open ({code})")

mj.stop()
snap.stop()
shutil.rmtree(store, ignore_errors=True)
fg.finish()
