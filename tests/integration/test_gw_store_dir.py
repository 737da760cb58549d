#!/usr/bin/env python3
"""store = dir:: 1000 frames from 10 cameras through a gateway that is restarted (SIGTERM,
graceful) in the middle; every answer carries its keys, every key is unique, and after the
restart every object is in the directory with the right bytes (what the first run still held
in memory went to the spool at shutdown and was written by the second run). Then
/v1/results, /v1/objects, /v1/storage, and the per-model switches (store_inputs off,
store_only_detections). The backend simulates inference (--simulate-ms): this is about the
gateway's writes, not the network."""
# ctest-timeout: 180
import concurrent.futures
import json
import os
import shutil
import tempfile
import time

import fg

root = tempfile.mkdtemp(prefix="fgt-store-")
objects = os.path.join(root, "objects")
spool = os.path.join(root, "spool")
# Every frame must be served and stored: with 8 clients over 10 cameras, a camera's frame
# can still be queued when its next one arrives, and the default depth of 1 would answer it
# "superseded" (200, nothing stored) on a loaded machine; a slow one could be skipped as stale.
settings = {"backends": 1, "backend_concurrency": 4, "store": f"dir:{objects}",
            "spool_dir": spool, "camera_queue_depth": 8, "camera_max_age_ms": 0}
img = fg.image("dog.jpg")


def send(gw, i):
    st, _, body = gw.detect(img, f"?camera=cam{i % 10}")
    return i, st, json.loads(body) if st == 200 else body


def run(gw, ids):
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(lambda i: send(gw, i), ids))


def settle(gw, timeout=60):
    """Waits until the writer holds nothing: no queue, nothing in flight, empty spool."""
    deadline = time.time() + timeout * fg.SLOW
    while time.time() < deadline:
        s = gw.json("/v1/storage")
        if s["queued"] == 0 and s["inflight"] == 0 and s["spool"]["objects"] == 0:
            return s
        time.sleep(0.1)
    return gw.json("/v1/storage")


try:
    with fg.Gateway(settings=settings, simulate_ms=1) as gw:
        answers = run(gw, range(500))
        code = gw.stop()  # right after the last answer: writes may still be queued
    fg.check(code == 0, f"first gateway exits 0 on SIGTERM (got {code})")

    with fg.Gateway(settings=settings, simulate_ms=1) as gw:
        answers += run(gw, range(500, 1000))
        s = settle(gw)
        fg.check(s["spool"]["objects"] == 0 and s["queued"] == 0,
                 f"the writer is drained after the restart: {s}")
        fg.check(s["up"] is True and sum(s["dropped"].values()) == 0,
                 f"store up, nothing dropped: {s}")

        bad = [(i, st) for i, st, r in answers if st != 200 or "stored" not in r]
        fg.check(not bad, f"1000 answers, all 200 and stored ({len(bad)} not: {bad[:5]})")
        keys = []
        for i, st, r in answers:
            if st == 200 and "stored" in r:
                keys += [r["stored"]["input"], r["stored"]["result"]]
        fg.check(len(keys) == 2000 and len(set(keys)) == 2000,
                 f"2000 keys (input + result per frame), all unique (got {len(set(keys))})")
        cams = {k.split("/")[0] for k in keys}
        fg.check(cams == {f"cam{c}" for c in range(10)}, f"keys under the 10 cameras: {cams}")
        layout_ok = all(
            len(k.split("/")) == 6 and k.split("/")[5].startswith(k.split("/")[0] + "-")
            and (k.endswith(".jpg") or k.endswith(".json")) for k in keys)
        fg.check(layout_ok, f"keys are CAMERA/YYYY/MM/DD/HH/CAMERA-<us>-<seq>.ext ({keys[0]})")

        on_disk = set()
        for d, _, files in os.walk(objects):
            for f in files:
                on_disk.add(os.path.relpath(os.path.join(d, f), objects))
        fg.check(on_disk == set(keys),
                 f"the directory holds exactly the 2000 keys (missing {len(set(keys) - on_disk)}, "
                 f"extra {sorted(on_disk - set(keys))[:3]})")
        inputs_ok = all(open(os.path.join(objects, k), "rb").read() == img
                        for k in keys if k.endswith(".jpg"))
        fg.check(inputs_ok, "every stored input is the uploaded JPEG, byte for byte")
        i, _, r = answers[123]
        stored = json.load(open(os.path.join(objects, r["stored"]["result"])))
        fg.check(stored["stored"] == r["stored"] and stored["id"] == r["id"],
                 "the stored answer is the answer, keys included")

        # GET /v1/results: camera 3 has frames 3, 13, ..., 993 — 100 frames, oldest first
        lst = gw.json("/v1/results?camera=cam3&limit=300")
        frames = lst["results"]
        want = {r["stored"]["input"] for i, st, r in answers if i % 10 == 3}
        fg.check(len(frames) == 100 and {f["input"] for f in frames} == want,
                 f"/v1/results lists camera 3's 100 frames (got {len(frames)})")
        fg.check([f["time_us"] for f in frames] == sorted(f["time_us"] for f in frames),
                 "oldest first")
        fg.check(all(f["result"] == f["input"][:-4] + ".json" for f in frames),
                 "each frame lists its input and its answer")
        page = gw.json("/v1/results?camera=cam3&limit=10")
        fg.check(len(page["results"]) == 10 and page["next_since"] is not None,
                 "limit=10 gives a page and where the next one starts")
        nxt = gw.json(f"/v1/results?camera=cam3&limit=300&since={page['next_since']}")
        fg.check(all(f["time_us"] >= page["next_since"] * 1000 for f in nxt["results"])
                 and len(nxt["results"]) >= 80,
                 f"since= starts at that millisecond ({len(nxt['results'])} frames)")
        st, _, _ = gw.request("GET", "/v1/results")
        fg.check(st == 400, f"/v1/results without camera is 400 (got {st})")

        # GET /v1/objects/KEY
        st, h, body = gw.request("GET", "/v1/objects/" + frames[0]["input"])
        fg.check(st == 200 and h["content-type"] == "image/jpeg" and body == img,
                 f"/v1/objects returns the stored JPEG (got {st})")
        st, h, body = gw.request("GET", "/v1/objects/" + frames[0]["result"])
        fg.check(st == 200 and h["content-type"] == "application/json"
                 and json.loads(body)["stored"]["input"] == frames[0]["input"],
                 "/v1/objects returns the stored answer")
        st, _, body = gw.request("GET", "/v1/objects/cam3/nothing-here.jpg")
        fg.check(st == 404 and json.loads(body)["error"]["code"] == "not_found",
                 f"a missing object is 404 not_found (got {st})")
        st, _, _ = gw.request("GET", "/v1/objects/cam3/..%2F..%2Fetc/passwd")
        fg.check(st in (400, 404), f"a key that climbs out is refused (got {st})")

    # per-model switches: no inputs; then only frames with detections (simulate finds none)
    with fg.Gateway(settings=dict(settings, **{"model.app.store_inputs": "off"}),
                    simulate_ms=1) as gw:
        st, _, body = gw.detect(img, "?camera=switch")
        r = json.loads(body)
        fg.check(st == 200 and "input" not in r["stored"] and "result" in r["stored"],
                 f"model.app.store_inputs=off keeps the answer only: {r.get('stored')}")
    # store_annotated: a format=jpeg answer is the annotated frame, kept beside the input
    with fg.Gateway(settings=dict(settings, store_annotated="on"), simulate_ms=1) as gw:
        st, h, body = gw.detect(img, "?camera=annot&format=jpeg")
        fg.check(st == 200 and h["content-type"] == "image/jpeg", f"format=jpeg answered ({st})")
        s = settle(gw)
        lst = gw.json("/v1/results?camera=annot")
        f0 = lst["results"][0] if lst and lst["results"] else {}
        fg.check(f0.get("annotated", "") and f0["annotated"].endswith(".boxes.jpg")
                 and f0.get("input") and f0.get("result"),
                 f"the annotated frame is kept with the input and the answer: {f0}")
        if f0.get("annotated"):
            st, h, a = gw.request("GET", "/v1/objects/" + f0["annotated"])
            fg.check(st == 200 and a == body, "the kept annotated frame is the JPEG answered")
    with fg.Gateway(settings=dict(settings, store_only_detections="on"), simulate_ms=1) as gw:
        st, _, body = gw.detect(img, "?camera=empty-hall")
        r = json.loads(body)
        fg.check(st == 200 and r["detections"] == [] and "stored" not in r,
                 "store_only_detections: a frame with nothing found is not kept")
        fg.check(not os.path.exists(os.path.join(objects, "empty-hall")),
                 "and nothing is written for its camera")

    # a model with its own store: its frames go there, the default model's stay put
    two = dict(settings)
    two.update(fg.app_model_settings("cams2"))
    two.update(fg.app_model_settings("app"))
    two.update({"models": "app,cams2", "default_model": "app",
                "model.cams2.store": f"dir:{root}/objects2"})
    with fg.Gateway(settings=two, simulate_ms=1) as gw:
        st, _, body = gw.detect(img, "?camera=split&model=cams2")
        r2 = json.loads(body)
        st1, _, body = gw.detect(img, "?camera=split")
        r1 = json.loads(body)
        fg.check(st == 200 and st1 == 200, f"both models answer ({st}, {st1})")
        settle(gw)
        fg.check(os.path.exists(os.path.join(root, "objects2", r2["stored"]["input"]))
                 and not os.path.exists(os.path.join(objects, r2["stored"]["input"])),
                 "model.cams2.store: its frame is kept in its own store")
        fg.check(os.path.exists(os.path.join(objects, r1["stored"]["input"])),
                 "the default model's frame in the top-level store")
        lst = gw.json("/v1/results?camera=split&model=cams2")
        fg.check(lst is not None and [f["input"] for f in lst["results"]] == [r2["stored"]["input"]],
                 "/v1/results?model=cams2 reads that model's store")
        s = gw.json("/v1/storage")
        fg.check(len(s["stores"]) == 2 and s["stores"][1]["spool"]["dir"].endswith("/cams2"),
                 f"/v1/storage lists both stores; the second spools in spool_dir/cams2: "
                 f"{[x['spool']['dir'] for x in s['stores']]}")
        st, _, _ = gw.request("GET", "/v1/results?camera=split&model=nope")
        fg.check(st == 404, f"an unknown model is 404 (got {st})")
finally:
    shutil.rmtree(root, ignore_errors=True)
fg.finish()
