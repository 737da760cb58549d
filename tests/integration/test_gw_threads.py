#!/usr/bin/env python3
"""A backend with --threads 2 answers what a 1-thread one does: the gateway serves the face
model twice, "face" (1 thread) and "face2" (`model.face2.backend_args = --threads 2`: oneDNN
on two threads, and each single-scan JPEG decoded in two bands at once, backend/image_jpeg.c),
and on JPEG frames of several sizes (720p, 1080p, grey, dark, a face at the edge) and a PNG
both find the same faces: boxes at IoU >= 0.999, scores within 2e-4. A truncated JPEG gets
the same 4xx from both, and face2 still serves the next frame."""
# ctest-timeout: 180
import json
import os
import time

import fg

REF = os.path.join(fg.cache_dir(), "faceapi-ref")
FRAMES = ["frame-720p-face.jpg", "frame-1080p-faces.jpg", "astronaut-gray.jpg",
          "frame-720p-dark.jpg", "astronaut-edge-bottom-right.jpg", "astronaut.png"]

settings = {
    "models": "face,face2",
    "default_model": "face",
    "min_backends": 1,
    "max_backends": 1,
    **fg.face_model_settings("face2"),
    "model.face2.backend_args": "--threads 2",
}
with fg.Gateway(settings=settings, app_model=False) as gw:
    for _ in range(int(100 * fg.SLOW)):  # both pools up
        models = gw.json("/v1/models") or {"models": []}
        if all(m.get("backends_ready", 0) >= 1 for m in models["models"]):
            break
        time.sleep(0.1)
    kids = set(fg.descendants(gw.proc.pid))
    two = [p for p in fg.pids_with_arg("--threads") if p in kids]
    fg.check(len(two) == 1, f"one backend runs with --threads ({two})")

    faces = 0
    for name in FRAMES:
        with open(os.path.join(REF, name), "rb") as f:
            img = f.read()
        ans = {}
        for model in ("face", "face2"):
            st, _, body = gw.detect(img, f"?model={model}")
            r = json.loads(body) if st == 200 else {}
            fg.check(st == 200 and r.get("model") == model, f"{name} -> 200 from {model} ({st})")
            ans[model] = sorted(r.get("detections", []), key=lambda d: -d["confidence"])
        a, b = ans["face"], ans["face2"]
        same = len(a) == len(b) and all(
            fg.iou(x["box"], y["box"]) >= 0.999 and abs(x["confidence"] - y["confidence"]) <= 2e-4
            for x, y in zip(a, b))
        fg.check(same, f"{name}: the same {len(a)} face(s) from 1 and 2 threads "
                       f"({[round(d['confidence'], 4) for d in a]} vs "
                       f"{[round(d['confidence'], 4) for d in b]})")
        faces += len(a)
    fg.check(faces >= 5, f"{faces} faces compared")

    with open(os.path.join(REF, FRAMES[1]), "rb") as f:
        img = f.read()
    cut = img[: len(img) * 2 // 3]
    res = {}
    for model in ("face", "face2"):
        st, _, body = gw.detect(cut, f"?model={model}")
        res[model] = (st, json.loads(body).get("error", {}).get("code") if body[:1] == b"{" else None)
    fg.check(res["face"] == res["face2"] and 400 <= res["face"][0] < 500,
             f"a truncated JPEG: the same error from both ({res})")
    st, _, _ = gw.detect(img, "?model=face2")
    fg.check(st == 200, f"face2 serves the next frame ({st})")
fg.finish()
