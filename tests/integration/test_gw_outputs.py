#!/usr/bin/env python3
"""The first run a newcomer gets, end to end: the gateway with its embedded defaults serves the
converted face-api face model, and posting astronaut.png answers the astronaut's face where
face-api itself finds it. Then every output and input a user asks for, through the real
gateway and real backends: PNG and the same photo as JPEG give the same face (within the
JPEG's loss); format=text is the top-1 label; format=jpeg is a decodable JPEG of the input's
size, changed inside the box; a darknet classifier (Debian's darknet.cfg, generated weights,
the ImageNet names) answers k classes and its top-1 as text; other formats are 415."""
# ctest-timeout: 300
import io
import json
import os
import subprocess
import tempfile

from PIL import Image

import fg

REF = os.path.join(fg.cache_dir(), "faceapi-ref")


with open(os.path.join(REF, "reference.json")) as f:
    reference = json.load(f)
with open(os.path.join(REF, "astronaut.png"), "rb") as f:
    png = f.read()
want = reference["images"]["astronaut.png"]["416"]
fg.check(len(want) == 1, "face-api finds one face on astronaut.png")

jpeg_buf = io.BytesIO()
Image.open(io.BytesIO(png)).convert("RGB").save(jpeg_buf, "JPEG", quality=95)
jpeg = jpeg_buf.getvalue()

tmp = tempfile.mkdtemp(prefix="fgt-cls-")
cls_weights = os.path.join(tmp, "darknet.weights")
subprocess.run([os.path.join(fg.BIN, "framegate-backend"), "--gen-weights", cls_weights,
                "--cfg", "/usr/share/darknet/cfg/darknet.cfg", "--seed", "1"],
               check=True, capture_output=True, timeout=120)

# Nothing about models is set: the embedded defaults (face, the default, and yolov3-tiny),
# plus one classifier model added next to them.
settings = {
    "models": "face,yolov3-tiny,classify",
    "model.classify.cfg": "/usr/share/darknet/cfg/darknet.cfg",
    "model.classify.weights": cls_weights,
    "model.classify.names": os.path.join(fg.DATA, "imagenet.shortnames.list"),
    "model.classify.top_k": 5,
    "model.classify.min_backends": 1,
}
try:
    with fg.Gateway(settings=settings, app_model=False) as gw:
        models = gw.json("/v1/models")
        by = {m["name"]: m for m in models["models"]}
        fg.check(models["default"] == "face", f"the default model is face ({models['default']})")
        fg.check(by["face"]["preprocess"] == "faceapi", "face uses face-api's pre-processing")

        # The newcomer's first request: a PNG, no parameters.
        st, _, body = gw.detect(png, content_type="image/png")
        r = json.loads(body)
        dets = r.get("detections", [])
        fg.check(st == 200 and r.get("model") == "face", f"astronaut.png -> 200 from face ({st})")
        fg.check(len(dets) == 1 and dets[0]["label"] == "face",
                 f"one face found ({[(d['label'], round(d['confidence'], 3)) for d in dets]})")
        if dets:
            got = dets[0]["box"]
            v = fg.iou(got, want[0])
            fg.log(f"gateway face {got} score {dets[0]['confidence']:.4f}; face-api {want[0]}; IoU {v:.5f}")
            fg.check(v >= 0.99, f"the same box as face-api (IoU {v:.5f})")
            fg.check(abs(dets[0]["confidence"] - want[0]["score"]) <= 0.01, "the same score as face-api")

        # The same photo as a JPEG: the same face within the JPEG's loss.
        st, _, body = gw.detect(jpeg)
        jd = json.loads(body).get("detections", [])
        fg.check(st == 200 and len(jd) == 1, f"astronaut.jpg -> one face ({st}, {len(jd)})")
        if jd and dets:
            v = fg.iou(jd[0]["box"], dets[0]["box"])
            fg.check(v >= 0.9 and abs(jd[0]["confidence"] - dets[0]["confidence"]) <= 0.05,
                     f"JPEG and PNG agree (IoU {v:.4f}, scores {jd[0]['confidence']:.4f} / {dets[0]['confidence']:.4f})")

        # format=text: the top-1 label.
        st, hdrs, body = gw.detect(png, "?format=text", content_type="image/png")
        fg.check(st == 200 and body.decode().strip() == "face", f"format=text -> face ({body[:40]!r})")

        # format=jpeg: a JPEG of the input's size, changed inside the box, not far outside it.
        st, hdrs, body = gw.detect(png, "?format=jpeg", content_type="image/png")
        fg.check(st == 200 and body[:2] == b"\xff\xd8", f"format=jpeg -> a JPEG ({st})")
        out = Image.open(io.BytesIO(body)).convert("RGB")
        src = Image.open(io.BytesIO(png)).convert("RGB")
        fg.check(out.size == src.size, f"annotated size {out.size} == input {src.size}")
        if dets and out.size == src.size:
            d = dets[0]["box"]
            x0, y0 = int(d["x"]), int(d["y"])
            x1, y1 = int(d["x"] + d["w"]) - 1, int(d["y"] + d["h"]) - 1

            def mean_diff(pixels):
                return sum(abs(a - b) for p in pixels for a, b in zip(out.getpixel(p), src.getpixel(p))) / (3 * len(pixels))

            # The rectangle's lines (2 px on a 512 px frame): the left, right and bottom edges.
            edge = [(x, y1) for x in range(x0 + 2, x1 - 1)] + \
                   [(x, y) for x in (x0, x1) for y in range(y0 + 2, y1 - 1)]
            changed = sum(1 for p in edge if mean_diff([p]) > 30) / len(edge)
            far = [(x, y) for x in range(0, src.size[0], 7) for y in range(0, src.size[1], 7)
                   if (x < x0 - 40 or x > x1 + 40) or (y < y0 - 60 or y > y1 + 40)]
            fg.log(f"box lines: {changed:.0%} of pixels changed by > 30; far from the box mean |diff| {mean_diff(far):.1f}")
            fg.check(changed > 0.8, "the box is drawn on the frame")
            fg.check(mean_diff(far) < 6, "the rest of the frame is the input (JPEG loss only)")

        # A classifier: k classes, most probable first, probabilities of a softmax.
        dog = fg.image("dog.jpg")
        st, _, body = gw.detect(dog, "?model=classify&top_k=3")
        r = json.loads(body)
        cl = r.get("classes", [])
        fg.log(f"classifier: {cl}")
        fg.check(st == 200 and len(cl) == 3 and "detections" not in r, f"top_k=3 -> 3 classes ({st})")
        fg.check(all(c["label"] and 0 < c["confidence"] <= 1 for c in cl), "labels and probabilities")
        fg.check(all(cl[i]["confidence"] >= cl[i + 1]["confidence"] for i in range(len(cl) - 1)),
                 "most probable first")
        fg.check(sum(c["confidence"] for c in cl) <= 1.0001, "they sum to at most 1")
        st, _, body = gw.detect(dog, "?model=classify")
        fg.check(len(json.loads(body).get("classes", [])) == 5, "the model's top_k 5 by default")
        st, _, body = gw.detect(dog, "?model=classify&format=text")
        fg.check(st == 200 and cl and body.decode().strip() == cl[0]["label"],
                 f"format=text -> the top-1 class ({body[:60]!r})")
        st, _, body = gw.detect(dog, "?model=classify&format=jpeg")
        fg.check(st == 200 and body[:2] == b"\xff\xd8", "a classifier's format=jpeg is a JPEG")

        # Only JPEG and PNG.
        gif = io.BytesIO()
        src.save(gif, "GIF")
        st, _, body = gw.detect(gif.getvalue(), content_type="image/gif")
        fg.check(st == 415, f"a GIF -> 415 ({st})")
        st, _, _ = gw.detect(png)  # a PNG sent as image/jpeg is still a PNG
        fg.check(st == 200, "the bytes decide the format, not the Content-Type")
finally:
    os.unlink(cls_weights)
    os.rmdir(tmp)
fg.finish()
