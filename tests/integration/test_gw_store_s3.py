#!/usr/bin/env python3
"""store = s3://: frames kept in a local S3 server that checks every signature (s3fake.py:
botocore's S3SigV4Auth as the independent reference; see its header for why not s3rver).
Objects land under the prefix with the keys the answers carry, byte for byte; /v1/results
lists them from the bucket (ListObjectsV2) and /v1/objects reads them back (GET). A gateway
with the wrong secret is refused (403 SignatureDoesNotMatch, counted by the server): its writes
fail, spool, and /v1/storage says why while /readyz stays 200."""
# ctest-timeout: 120
import json
import os
import re
import shutil
import tempfile
import time

import fg
from s3fake import S3Fake

root = tempfile.mkdtemp(prefix="fgt-s3-")
s3 = S3Fake(os.path.join(root, "s3"))
os.makedirs(s3.root)


def settings(secret="S3RVER", spool="spool"):
    return {"backends": 1, "store": "s3://test-bucket/fg/frames",
            "s3_endpoint": f"http://127.0.0.1:{s3.port}", "s3_path_style": "on",
            "s3_region": "eu-west-3", "s3_access_key": "S3RVER", "s3_secret_key": secret,
            "spool_dir": os.path.join(root, spool), "store_retry_initial_ms": 200,
            "store_retry_max_ms": 1000, "store_timeout_ms": 5000}


def wait_written(gw, n, timeout=30):
    deadline = time.time() + timeout * fg.SLOW
    while time.time() < deadline:
        s = gw.json("/v1/storage")
        if s["written"] >= n and s["queued"] == 0 and s["inflight"] == 0:
            return s
        time.sleep(0.05)
    return gw.json("/v1/storage")


img, eagle = fg.image("dog.jpg"), fg.image("eagle.jpg")
try:
    s3.start()
    with fg.Gateway(settings=settings(), simulate_ms=1) as gw:
        answers = []
        for i in range(30):
            st, _, body = gw.detect(img if i % 2 else eagle, f"?camera=door{i % 3}&format=json")
            answers.append((i, st, json.loads(body)))
        fg.check(all(st == 200 for _, st, _ in answers), "30 frames answered 200")
        s = wait_written(gw, 60)
        fg.check(s["written"] == 60 and s["failed"] == 0 and s["up"],
                 f"60 objects written, none failed: {s}")
        keys = s3.keys()
        want = set()
        for i, _, r in answers:
            want |= {"fg/frames/" + r["stored"]["input"], "fg/frames/" + r["stored"]["result"]}
        fg.check(keys == want, f"the bucket holds exactly the 60 keys under the prefix "
                               f"(missing {len(want - keys)}, extra {len(keys - want)})")
        i, _, r = answers[7]
        fg.check(s3.read("fg/frames/" + r["stored"]["input"]) == img,
                 "a stored input is the uploaded JPEG, byte for byte")
        fg.check(json.loads(s3.read("fg/frames/" + r["stored"]["result"]))["id"] == r["id"],
                 "a stored answer is the answer")

        lst = gw.json("/v1/results?camera=door1&limit=300")
        fg.check(lst is not None and len(lst["results"]) == 10
                 and {f["input"] for f in lst["results"]}
                 == {r["stored"]["input"] for i, _, r in answers if i % 3 == 1},
                 "/v1/results lists door1's 10 frames from the bucket")
        st, h, body = gw.request("GET", "/v1/objects/" + answers[4][2]["stored"]["input"])
        fg.check(st == 200 and body == eagle and h["content-type"] == "image/jpeg",
                 f"/v1/objects reads an object back from S3 (got {st})")
        st, _, body = gw.request("GET", "/v1/objects/door1/none.jpg")
        fg.check(st == 404, f"a missing object is 404 (got {st})")
    ok_before = s3.log().count("SignatureDoesNotMatch")
    fg.check(ok_before == 0, "the server refused none of the good gateway's requests")

    # the wrong secret: S3 refuses, writes spool, the gateway stays ready and says why
    with fg.Gateway(settings=settings(secret="WRONG", spool="spool2"), simulate_ms=1) as gw:
        for i in range(5):
            st, _, _ = gw.detect(img, "?camera=bad")
            fg.check(st == 200, f"frame {i} answered 200 although the store refuses it")
        deadline = time.time() + 10
        while time.time() < deadline and gw.json("/v1/storage")["spool"]["objects"] < 10:
            time.sleep(0.05)
        s = gw.json("/v1/storage")
        fg.check(s["up"] is False and s["failed"] >= 1 and s["spool"]["objects"] == 10,
                 f"writes fail and the 10 objects spool: {s}")
        fg.check("SignatureDoesNotMatch" in (s["reason"] or ""),
                 f"/v1/storage gives S3's reason: {s['reason']}")
        st, _, _ = gw.request("GET", "/readyz")
        fg.check(st == 200, f"/readyz stays 200 while the store fails (got {st})")
        m = gw.metrics()
        fg.check(fg.metric_value(m, "framegate_store_up") == 0
                 and fg.metric_value(m, "framegate_store_spool_objects") == 10,
                 "metrics: store down, 10 objects spooled")
    denied = len(re.findall(r"-> 403 SignatureDoesNotMatch", s3.log()))
    fg.check(denied >= 1, f"the S3 server refused the wrong signature ({denied} times)")
    fg.check(not any(k.startswith("fg/frames/bad/") for k in s3.keys()),
             "nothing signed with the wrong secret reached the bucket")
finally:
    s3.stop()
    shutil.rmtree(root, ignore_errors=True)
fg.finish()
