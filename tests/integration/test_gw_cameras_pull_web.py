#!/usr/bin/env python3
"""A pull camera watched in a real browser: the gateway pulls a local MJPEG server (Debian's
darknet JPEGs), the real yolov3-tiny draws the boxes, and headless chromium shows
/v1/cameras/ID/stream.mjpeg in an <img> beside the camera's /v1/cameras entry; curl reads the
same stream as whole JPEG frames. The screenshot goes to the build's tmp/ directory."""
# ctest-timeout: 150
import json
import os
import shutil
import subprocess
import sys

import fg
from camserve import CamServer

node_modules = os.path.join(fg.cache_dir(), "webtest", "node_modules")
if not os.path.isdir(os.path.join(node_modules, "playwright-core")) or \
        not os.path.exists("/usr/bin/chromium"):
    fg.log("SKIP: needs /usr/bin/chromium (scripts/setup.sh) and playwright-core "
           "(scripts/models.sh)")
    sys.exit(77)

S = fg.SLOW
out_dir = os.path.join(os.path.dirname(os.path.abspath(fg.BIN)), "tmp")
shot = os.path.join(out_dir, "camera-stream.png")
if os.path.exists(shot):
    os.unlink(shot)
# An ES module resolves packages from its own directory: run it beside node_modules.
drive = os.path.join(fg.cache_dir(), "webtest", "camview.mjs")
shutil.copy(os.path.join(fg.SRC, "scripts", "webtest", "camview.mjs"), drive)
env = dict(os.environ, NODE_PATH=node_modules)

mj = CamServer(fps=5 / S).start()
settings = {"backends": 1,
            "camera.porch.url": f"http://127.0.0.1:{mj.port}/video.mjpg",
            "camera.porch.max_frame_bytes": "2M",
            # the test model's generated weights box everything at 55-60%: fewer boxes
            "camera.porch.threshold": 0.61}
with fg.Gateway(settings=settings) as gw:
    base = f"http://127.0.0.1:{gw.port}"
    out = subprocess.run(["curl", "-s", "-N", "--max-time", str(6 * S),
                          f"{base}/v1/cameras/porch/stream.mjpeg"],
                         capture_output=True, timeout=30 * S).stdout
    frames = [p for p in out.split(b"--framegate\r\n")[1:] if b"\xff\xd8" in p]
    fg.check(len(frames) >= 3, f"curl read {len(frames)} frames of the pulled camera's stream")
    p = subprocess.run(["node", drive, base, "porch", shot], capture_output=True, text=True,
                       timeout=120 * S, env=env)
    line = (p.stdout.strip().splitlines() or ["{}"])[-1]
    r = json.loads(line) if line.startswith("{") else {}
    fg.check(r.get("ok") is True, f"chromium showed the stream: {r} {p.stderr[-1500:]}")
    fg.check((r.get("width") or 0) > 100 and (r.get("height") or 0) > 100,
             f"the <img> holds a decoded frame ({r.get('width')}x{r.get('height')})")
    fg.check((r.get("frames") or 0) >= 5 and r.get("state") == "up",
             f"frames kept coming while watched ({r.get('frames')}, {r.get('state')})")
    fg.check(os.path.exists(shot) and os.path.getsize(shot) > 10000, f"screenshot {shot}")
    code = gw.stop()
    fg.check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
mj.stop()
fg.finish()
