#!/usr/bin/env python3
"""Live cameras: open-loop push cameras against a pool that cannot serve them all. Each
camera gets its fair share, no frame is answered older than camera_max_age_ms, nothing
waits for a 504, results come in sequence order (answers and the SSE stream), a busy camera
does not starve small ones, and the streams (SSE with resume, MJPEG, latest.jpg) work."""
# ctest-timeout: 240
import json
import socket
import threading
import time

import fg
from camfeed import PushCamera

S = fg.SLOW
IMG = fg.image("dog.jpg")


class SSE:
    """Reads a camera's event stream; keeps (id, data) in arrival order."""

    def __init__(self, gw, name, last_event_id=None):
        self.events = []
        self.head = b""
        self.sock = socket.create_connection(("127.0.0.1", gw.port))
        extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id is not None else ""
        self.sock.sendall(f"GET /v1/cameras/{name}/events HTTP/1.1\r\nHost: x\r\n{extra}\r\n"
                          .encode())
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf = b""
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            if not self.head and b"\r\n\r\n" in buf:
                self.head, buf = buf.split(b"\r\n\r\n", 1)
            while self.head and b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                fields = dict(l.split(": ", 1) for l in ev.decode().split("\n") if ": " in l)
                if "id" in fields:
                    self.events.append((int(fields["id"]), json.loads(fields["data"])))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.t.join(5)


def run_cameras(gw, rates, seconds, watch=()):
    cams = [PushCamera(gw, name, fps, IMG) for name, fps in rates]
    sses = {name: SSE(gw, name) for name in watch}
    t0 = time.time()
    # Spread the cameras' phases over one frame interval, like independent feeds.
    for i, c in enumerate(cams):
        c.start(phase=(i / len(cams)) / c.fps)
    max_queued = 0
    while time.time() - t0 < seconds:
        b = gw.backends()
        max_queued = max(max_queued, b["queued"])
        time.sleep(0.1)
    t_end = time.time()
    for c in cams:
        c.stop.set()
    time.sleep(1.5 * S)  # the last answers
    for c in cams:
        c.close()
    return cams, sses, t0, t_end, max_queued


# Under a sanitizer everything runs S times slower: the whole scenario is slowed down by S
# (service time, frame rates, max age), so the shares it checks are the same.

# ---- 20 cameras at 5 fps, a pool of ~40 fps: fair, fresh, in order ----
MAX_AGE = int(1000 * S)
settings = {"backends": 4, "camera_max_age_ms": MAX_AGE, "max_pipelined": 64,
            "deadline_ms": 30000}
with fg.Gateway(settings=settings, simulate_ms=int(100 * S)) as gw:
    # The SSE streams must exist before frames: cameras register at their first frame.
    for name in ("cam-00", "cam-01"):
        gw.detect(IMG, f"?camera={name}")
    rates = [(f"cam-{i:02d}", 5 / S) for i in range(20)]
    cams, sses, t0, t_end, max_queued = run_cameras(gw, rates, 10 * S, watch=("cam-00", "cam-01"))
    w0, w1 = t0 + 3 * S, t_end - 0.5  # steady state: after the warm-up, before the end
    fps = {c.name: len(c.results(w0, w1)) / (w1 - w0) for c in cams}
    lo, hi = min(fps.values()), max(fps.values())
    fg.log("served fps per camera:", " ".join(f"{v:.2f}" for v in fps.values()))
    # Shares and throughput apart (absolute 1.6..2.4 fps per camera failed whenever a loaded
    # machine slowed the whole pool): each camera within 20% of the mean, the pool kept busy.
    mean = sum(fps.values()) / len(fps)
    fg.check(0.8 * mean <= lo and hi <= 1.2 * mean,
             f"every camera served within 20% of the mean {mean:.2f} (min {lo:.2f}, max {hi:.2f})")
    if not fg.SANITIZE:  # the gateway's own speed under a sanitizer is not under test
        fg.check(sum(fps.values()) >= 0.8 * 40, f"the 4 backends kept busy: "
                 f"{sum(fps.values()):.1f} fps of ~40")
    statuses = {}
    for c in cams:
        for a in c.answers:
            statuses[a[2]] = statuses.get(a[2], 0) + 1
    fg.check(set(statuses) == {200}, f"every frame answered 200, no 504 ({statuses})")
    sent = sum(len(c.sent) for c in cams)
    answered = sum(len(c.answers) for c in cams)
    fg.check(answered == sent, f"every frame pushed was answered ({answered}/{sent})")
    ages = [a[3]["timing"]["total_ms"] for c in cams for a in c.results()]
    fg.check(ages and max(ages) <= MAX_AGE,
             f"no result older than camera_max_age_ms (max {max(ages) if ages else None} ms)")
    verdicts = {}
    for c in cams:
        for a in c.answers:
            if a[3] and "status" in a[3] and a[2] == 200:
                verdicts[a[3]["status"]] = verdicts.get(a[3]["status"], 0) + 1
    sup = [a[3] for c in cams for a in c.answers if a[3] and a[3].get("status") == "superseded"]
    fg.check(sup and all(s["by"] > s["seq"] for s in sup),
             f"frames a newer one replaced answered superseded by it ({verdicts})")
    fg.check(max_queued <= 20, f"the queue never held more than one frame per camera "
                               f"(max {max_queued})")
    in_order = all(all(x[3]["seq"] < y[3]["seq"] for x, y in zip(c.results(), c.results()[1:]))
                   for c in cams)
    fg.check(in_order, "each camera's results answered in sequence order")
    for name, sse in sses.items():
        ids = [e[0] for e in sse.events]
        fg.check(len(ids) > 10 and all(a < b for a, b in zip(ids, ids[1:])),
                 f"{name}: SSE events in strictly increasing seq ({len(ids)} events)")
        fg.check(all(e[1]["seq"] == e[0] and e[1]["camera"] == name for e in sse.events),
                 f"{name}: each event's data carries its seq and camera")
    # Resume: a client that saw up to some id gets exactly the kept events after it.
    ids = [e[0] for e in sses["cam-00"].events]
    for s in sses.values():
        s.close()
    mid = ids[len(ids) - 5]
    r = SSE(gw, "cam-00", last_event_id=mid)
    time.sleep(0.5 * S)
    r.close()
    got = [e[0] for e in r.events]
    fg.check(got == [i for i in ids if i > mid], f"Last-Event-ID {mid} resumes with {got}")
    doc = gw.json("/v1/cameras")
    byname = {c["id"]: c for c in doc["cameras"]}
    fg.check(len(byname) == 20, f"/v1/cameras lists the 20 cameras ({len(byname)})")
    c0 = byname.get("cam-00", {})
    fg.check(c0.get("frames", {}).get("superseded", 0) > 0 and c0["age_ms"]["p95"] <= MAX_AGE,
             f"/v1/cameras: counts and frame age p95 ({c0.get('frames')}, {c0.get('age_ms')})")
    m = gw.metrics()
    fg.check(fg.metric_value(m, "framegate_camera_frames_served_total", {"camera": "cam-05"}) > 0,
             "per-camera metrics carry the camera label")

# ---- 1 camera at 30 fps + 19 at 2 fps: the small ones keep their 2 fps ----
settings = {"backends": 4, "camera_max_age_ms": MAX_AGE, "max_pipelined": 64}
with fg.Gateway(settings=settings, simulate_ms=int(80 * S)) as gw:
    rates = [("big", 30 / S)] + [(f"small-{i:02d}", 2 / S) for i in range(19)]
    cams, _, t0, t_end, _ = run_cameras(gw, rates, 8 * S)
    w0, w1 = t0 + 3 * S, t_end - 0.5
    fps = {c.name: len(c.results(w0, w1)) / (w1 - w0) for c in cams}
    small = [v for k, v in fps.items() if k != "big"]
    fg.log("big:", f"{fps['big']:.2f}", "small:", " ".join(f"{v:.2f}" for v in small))
    fg.check(min(small) >= 1.7 / S * (0.85 if fg.SANITIZE else 1),
             f"every small camera keeps ~2 fps (min {min(small):.2f})")
    fg.check(fps["big"] >= 5 / S, f"the busy camera gets the rest ({fps['big']:.2f} fps)")
    statuses = {a[2] for c in cams for a in c.answers}
    fg.check(statuses == {200}, f"no failures ({statuses})")

# ---- the picture streams: MJPEG read by curl, latest.jpg, a reader that never reads ----
import subprocess  # noqa: E402

with fg.Gateway(settings={"backends": 2}, simulate_ms=int(50 * S)) as gw:
    cam = PushCamera(gw, "door", 10 / S, IMG)
    gw.detect(IMG, "?camera=door")  # registers the camera
    # A reader that never reads: its frames are dropped once its socket is full.
    stuck = socket.create_connection(("127.0.0.1", gw.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /v1/cameras/door/stream.mjpeg HTTP/1.1\r\nHost: x\r\n\r\n")
    cam.start(0)
    out = subprocess.run(["curl", "-s", "-N", "-D", "-", "--max-time", str(4 * S),
                          f"http://127.0.0.1:{gw.port}/v1/cameras/door/stream.mjpeg"],
                         capture_output=True, timeout=30 * S).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    fg.check(b"multipart/x-mixed-replace; boundary=framegate" in head,
             f"stream.mjpeg is multipart/x-mixed-replace ({head[:120]!r})")
    parts = body.split(b"--framegate\r\n")[1:]
    frames, seqs = [], []
    for p in parts:
        h, _, rest = p.partition(b"\r\n\r\n")
        hd = dict(l.split(b": ", 1) for l in h.split(b"\r\n") if b": " in l)
        n = int(hd.get(b"Content-Length", b"-1"))
        if 0 < n <= len(rest):
            frames.append(rest[:n])
            seqs.append(int(hd[b"X-Framegate-Seq"]))
    fg.check(len(frames) >= 10 and all(f[:2] == b"\xff\xd8" and f[-2:] == b"\xff\xd9"
                                       for f in frames),
             f"curl read {len(frames)} whole JPEG frames in 4 s")
    fg.check(all(a < b for a, b in zip(seqs, seqs[1:])), "MJPEG frames in seq order")
    st, hdrs, jpg = gw.request("GET", "/v1/cameras/door/latest.jpg")
    fg.check(st == 200 and jpg[:2] == b"\xff\xd8" and hdrs.get("x-framegate-annotated") == "true",
             f"latest.jpg is the annotated frame ({st}, {hdrs.get('x-framegate-annotated')})")
    st, _, _ = gw.request("GET", "/v1/cameras/nope/stream.mjpeg")
    fg.check(st == 404, f"an unknown camera's stream -> 404 ({st})")
    time.sleep(1 * S)
    m = gw.metrics()
    dropped = fg.metric_value(m, "framegate_stream_dropped_total")
    fg.check(dropped > 0, f"frames for the reader that never reads were dropped ({dropped})")
    rss = int(open(f"/proc/{gw.proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    fg.check(rss < 300 * 1024 * (3 if fg.SANITIZE else 1), f"the gateway stays small ({rss} kB)")
    cam.stop.set()
    time.sleep(0.5)
    cam.close()
    stuck.close()

fg.finish()
