#!/usr/bin/env python3
"""End to end with the real default network: gateway + darknet backend, real JPEGs from
Debian's darknet package, through all three upload forms."""
# ctest-timeout: 240
import json

import fg


def boxes_inside(result, w, h):
    for d in result["detections"]:
        b = d["box"]
        if not (0 <= b["x"] <= w and 0 <= b["y"] <= h and b["w"] >= 0 and b["h"] >= 0
                and b["x"] + b["w"] <= w + 0.5 and b["y"] + b["h"] <= h + 0.5):
            return False
        if not (0 <= d["confidence"] <= 1) or not isinstance(d["label"], str):
            return False
    return True


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker, or None."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker, seglen = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return (int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big"))
        i += 2 + seglen
    return None


with fg.Gateway(settings={"backends": 1}) as gw:
    dog = fg.image("dog.jpg")
    st, hdrs, body = gw.detect(dog, "?camera=front-door&ts=1700000000000")
    fg.check(st == 200, f"raw JPEG -> 200 (got {st} {body[:200]!r})")
    r = json.loads(body)
    fg.check(hdrs["content-type"].startswith("application/json"), "JSON content type")
    fg.check((r["width"], r["height"]) == (768, 576), f"dog.jpg is 768x576 (got {r['width']}x{r['height']})")
    fg.check(isinstance(r["detections"], list), "detections is an array")
    fg.check(boxes_inside(r, 768, 576), f"{len(r['detections'])} boxes lie inside the image")
    fg.check(r["camera"] == "front-door", "camera echoed from the query")
    fg.check(r["backend"] == "app-instance1", f"backend named app-instance1 (got {r['backend']})")
    fg.check(r["model"] == "app", f"model app, yolov3-tiny as fg declares it (got {r['model']})")
    t = r["timing"]
    fg.check(t["infer_ms"] > 0 and t["total_ms"] >= t["infer_ms"], f"timings {t}")

    # The same frame again answers the same detections: the network is deterministic.
    st2, _, body2 = gw.detect(dog)
    fg.check(st2 == 200 and json.loads(body2)["detections"] == r["detections"],
             "a second run of the same frame gives the same detections")

    # format=text: the most confident label (or "none"); format=jpeg: the annotated frame
    st, hdrs, body = gw.detect(dog, "?format=text")
    top = r["detections"][0]["label"] if r["detections"] else "none"
    fg.check(st == 200 and hdrs["content-type"].startswith("text/plain") and body.decode() == top,
             f"format=text gives the top label {top!r} (got {body[:40]!r})")
    st, hdrs, body = gw.detect(dog, "?format=jpeg")
    fg.check(st == 200 and hdrs["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
             and body.rstrip(b"\0")[-2:] == b"\xff\xd9", "format=jpeg gives a JPEG")
    fg.check(jpeg_size(body) == (768, 576), f"the annotated JPEG is 768x576 ({jpeg_size(body)})")
    fg.check(body != dog, "and it is not the input unchanged")

    # base64 in JSON
    st, _, body = gw.detect(fg.b64_json(fg.image("person.jpg"), camera="cam-json", ts=5),
                            content_type="application/json")
    r = json.loads(body)
    fg.check(st == 200 and r["camera"] == "cam-json", f"base64 JSON -> 200 (got {st})")
    fg.check((r["width"], r["height"]) == (640, 424), f"person.jpg is 640x424 (got {r['width']}x{r['height']})")
    fg.check(boxes_inside(r, 640, 424), "JSON path boxes inside the image")

    # multipart with two images: one result per image part, in order
    body, ctype = fg.multipart([("camera", None, None, b"cam-mp"),
                                ("image", "dog.jpg", "image/jpeg", dog),
                                ("image", "eagle.jpg", "image/jpeg", fg.image("eagle.jpg"))])
    st, _, resp = gw.detect(body, content_type=ctype)
    fg.check(st == 200, f"multipart -> 200 (got {st} {resp[:200]!r})")
    res = json.loads(resp).get("results", [])
    fg.check(len(res) == 2, f"two results for two image parts (got {len(res)})")
    if len(res) == 2:
        fg.check((res[0]["width"], res[0]["height"]) == (768, 576), "first part is dog.jpg")
        fg.check((res[1]["width"], res[1]["height"]) == (773, 512),
                 f"second part is eagle.jpg (got {res[1]['width']}x{res[1]['height']})")

    # the probes
    st, _, body = gw.request("GET", "/healthz")
    fg.check(st == 200, "/healthz 200")
    st, _, body = gw.request("GET", "/readyz")
    fg.check(st == 200 and json.loads(body)["ready"] is True, "/readyz 200 with a ready backend")
    b = gw.backends()
    fg.check(b is not None and len(b["backends"]) == 1 and b["backends"][0]["state"] == "ready",
             "/v1/backends lists one ready backend")
    fg.check(b["backends"][0]["served"] >= 5, f"it served the frames (served={b['backends'][0]['served']})")
    code = gw.stop()
    fg.check(code == 0, f"gateway exits 0 on SIGTERM (got {code})")

fg.finish()
