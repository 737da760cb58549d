#!/usr/bin/env python3
"""The page in a real browser: Debian's chromium, headless, driven by playwright-core
(scripts/webtest, installed by scripts/models.sh from its lockfile into the cache). Uploads 20
images through the page, waits for 20 thumbnails and the count "20", checks the live chart
shows a ready backend, saves two screenshots, presses Reset (confirmed) and sees the list
empty. The backend runs the real yolov3-tiny, so thumbnails are annotated.

The screenshots go to BUILD/web-screenshots/ (beside FG_BIN_DIR), never into the source tree
unless asked: FG_WEB_SCREENSHOTS=DIR writes them there instead, e.g.
FG_WEB_SCREENSHOTS=bench/results/web to refresh the ones the README shows."""
# ctest-timeout: 180
import json
import os
import shutil
import subprocess
import sys
import tempfile

import fg

node_modules = os.path.join(fg.cache_dir(), "webtest", "node_modules")
if not os.path.isdir(os.path.join(node_modules, "playwright-core")) or \
        not os.path.exists("/usr/bin/chromium"):
    fg.log("SKIP: needs /usr/bin/chromium (scripts/setup.sh) and playwright-core "
           "(scripts/models.sh)")
    sys.exit(77)

root = tempfile.mkdtemp(prefix="fgt-web-")
names = ["dog.jpg", "eagle.jpg", "horses.jpg", "person.jpg"]
files = []
for i in range(20):
    p = os.path.join(root, f"photo_{i:02d}.jpg")
    shutil.copy(os.path.join(fg.DATA, names[i % 4]), p)
    files.append(p)
out = os.path.abspath(os.environ.get("FG_WEB_SCREENSHOTS") or
                      os.path.join(os.path.dirname(os.path.abspath(fg.BIN)), "web-screenshots"))
shots = ("page-1280x800.png", "page-phone.png")
os.makedirs(out, exist_ok=True)
for f in shots:  # what is checked below is this run's
    if os.path.exists(os.path.join(out, f)):
        os.unlink(os.path.join(out, f))
env = dict(os.environ, NODE_PATH=node_modules)
drive = os.path.join(root, "drive.mjs")
# An ES module resolves packages from its own directory: run it beside node_modules.
shutil.copy(os.path.join(fg.SRC, "scripts", "webtest", "drive.mjs"),
            os.path.join(fg.cache_dir(), "webtest", "drive.mjs"))
drive = os.path.join(fg.cache_dir(), "webtest", "drive.mjs")
settings = {"backends": 1, "max_body_bytes": 32 << 20, "jobs_dir": os.path.join(root, "jobs"),
            "admin_token": ""}
with fg.Gateway(settings=settings) as gw:
    st, hdr, body = gw.request("GET", "/")
    fg.check(st == 200 and b"<form" in body and hdr["content-type"].startswith("text/html"),
             "GET / serves the page (a form that works without JS)")
    p = subprocess.run(["node", drive, f"http://127.0.0.1:{gw.port}/", out] + files,
                       capture_output=True, text=True, timeout=150, env=env)
    line = (p.stdout.strip().splitlines() or ["{}"])[-1]
    r = json.loads(line) if line.startswith("{") else {}
    fg.check(r.get("ok") is True, f"the browser run completed: {r} {p.stderr[-2000:]}")
    fg.check(r.get("thumbs") == 20, f"20 thumbnails ({r.get('thumbs')})")
    fg.check(r.get("count") == "20" and r.get("lines") == 20,
             f"the count says 20 and the list has 20 lines ({r.get('count')}, {r.get('lines')})")
    fg.check((r.get("ready") or 0) >= 1, f"the live chart shows a backend ({r.get('ready')})")
    fg.check(r.get("after_reset") == {"thumbs": 0, "count": "0"},
             f"Reset empties the list ({r.get('after_reset')})")
    fg.check(gw.json("/v1/jobs")["jobs"] == [], "the gateway has no jobs after Reset")
    code = gw.stop()
    fg.check(code == 0, f"the gateway exits 0 on SIGTERM (got {code})")
    for f in shots:
        p = os.path.join(out, f)
        fg.check(os.path.exists(p) and os.path.getsize(p) > 1000, f"screenshot {p}")
shutil.rmtree(root, ignore_errors=True)
fg.finish()
