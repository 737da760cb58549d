#!/usr/bin/env python3
"""A 1000-image batch job (issue 19's demo): one POST /v1/jobs of N images, timed from the
upload to the job's "done", on the face model (face-api's tiny face detector converted by
scripts/models.sh: real inference, no --simulate-ms) with the pool autoscaled from 1 backend
to MAX, once per MAX in MAXES. Prints per run: seconds, images/s, the most backends seen
ready, failed images, and the time back to min_backends after the job; writes
bench/results/8_jobs_1000/summary.{json,txt} with the command line and the machine.

    python3 bench/scenarios/8_jobs_1000.py              # N=1000 MAXES="2 4"
    N=200 MAXES=2 python3 bench/scenarios/8_jobs_1000.py   # a short look

The images are darknet's seven sample photos, cycled, given to the job as URLs served by a
local HTTP server (one small JSON body instead of a 140 MB multipart; the gateway allow-lists
127.0.0.1 with fetch_allow), so the time includes fetching each image, as a job of URLs does.
"""
import http.server
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time

repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(repo, "tests", "integration"))
os.environ.setdefault("FG_BIN_DIR", os.path.join(os.environ.get("BUILD_DIR", repo + "/build"), "bin"))
os.environ.setdefault("FG_SOURCE_DIR", repo)
import fg  # noqa: E402

N = int(os.environ.get("N", 1000))
MAXES = [int(x) for x in os.environ.get("MAXES", "2 4").split()]
TIMEOUT = float(os.environ.get("TIMEOUT", 900))
BACK_IN_S = float(os.environ.get("BACK_IN_S", 60))  # how long to watch the scale-in
out = os.environ.get("OUT") or os.path.join(repo, "bench", "results", "8_jobs_1000")
models = os.path.join(fg.cache_dir(), "models")
PHOTOS = sorted(f for f in os.listdir(fg.DATA) if f.endswith(".jpg"))
BYTES = {f"/{i}.jpg": fg.image(p) for i, p in enumerate(PHOTOS)}


class Images(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = BYTES.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


def ready(gw):
    m = gw.json("/v1/models") or {}
    return sum(x.get("backends_ready", 0) for x in m.get("models", []))


def run(mx, srv):
    settings = {"models": "face", "default_model": "face",
                "model.face.cfg": os.path.join(models, "face-tiny.cfg"),
                "model.face.weights": os.path.join(models, "face-tiny.weights"),
                "model.face.names": os.path.join(models, "face.names"),
                "model.face.input_size": 416, "model.face.preprocess": "faceapi",
                "model.face.decode": "exact", "model.face.threshold": 0.5,
                "model.face.nms": 0.4, "min_backends": 1, "max_backends": mx,
                "backend_concurrency": 1, "fetch_allow": "127.0.0.1",
                "jobs_dir": os.path.join(tmp, f"jobs{mx}")}
    urls = [f"{srv}/{i % len(PHOTOS)}.jpg" for i in range(N)]
    with fg.Gateway(settings=settings, app_model=False) as gw:
        t0 = time.time()
        st, _, data = gw.request("POST", "/v1/jobs", body=json.dumps({"urls": urls}).encode(),
                                 headers={"Content-Type": "application/json"})
        if st != 202:
            raise SystemExit(f"upload: {st} {data[:200]}")
        jid = json.loads(data)["id"]
        most, j = 0, None
        while time.time() - t0 < TIMEOUT:
            j = gw.json(f"/v1/jobs/{jid}?limit=0")
            most = max(most, ready(gw))
            if j["state"] == "done":
                break
            time.sleep(0.2)
        secs = time.time() - t0
        t1 = time.time()
        while ready(gw) > 1 and time.time() - t1 < BACK_IN_S:  # back in after the job
            time.sleep(0.5)
        back_in = time.time() - t1 if ready(gw) <= 1 else None
        c = j["counts"]
        return {"max_backends": mx, "images": N, "state": j["state"], "seconds": round(secs, 2),
                "images_per_s": round((c["done"] + c["failed"]) / secs, 2), "done": c["done"],
                "failed": c["failed"], "most_ready": most,
                "back_to_min_s": round(back_in, 1) if back_in is not None else None}


httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Images)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
srv = f"http://127.0.0.1:{httpd.server_address[1]}"
tmp = tempfile.mkdtemp(prefix="fgb-jobs-")
rows = []
for mx in MAXES:
    r = run(mx, srv)
    rows.append(r)
    print(json.dumps(r), flush=True)
httpd.shutdown()
shutil.rmtree(tmp, ignore_errors=True)

cmd = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("N", "MAXES", "BACK_IN_S")
               if k in os.environ)
cmd = (cmd + " " if cmd else "") + "python3 bench/scenarios/8_jobs_1000.py"
lines = [f"# {cmd}", f"# {platform.node()} {os.cpu_count()} cpus, load average "
         f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at the end, "
         f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
         "max_backends  images  seconds  images/s  done  failed  most_ready  back_to_min_s"]
for r in rows:
    lines.append(f"{r['max_backends']:>12}  {r['images']:>6}  {r['seconds']:>7}  "
                 f"{r['images_per_s']:>8}  {r['done']:>4}  {r['failed']:>6}  {r['most_ready']:>10}  "
                 f"{r['back_to_min_s'] if r['back_to_min_s'] is not None else f'>{BACK_IN_S:g}':>13}")
print("\n".join(lines))
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump({"command": cmd, "runs": rows}, f, indent=1)
