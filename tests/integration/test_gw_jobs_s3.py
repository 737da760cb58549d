#!/usr/bin/env python3
"""jobs_store = s3://: a job's objects in a local S3 server that checks every signature
(s3fake.py: botocore's S3SigV4Auth as the independent reference). The upload is answered 202
once its images and meta are in the bucket (jobs/ID/meta, in/N under the store's prefix); a
gateway SIGKILLed mid-job and restarted reads the job back from the bucket (ListObjectsV2 +
GET), sends only the images without a result object and completes with every image's result
exactly once (one res/N object per index, none missing, no other index), also when the
bucket is down at the restart (the load is tried again until it answers); POST /v1/reset
deletes every object under jobs/ (signed DELETEs) and leaves the rest of the bucket alone: a
camera's kept frames under the same prefix (one of a camera named "jobs" included), and keys
that only look alike. Backends simulate
inference (--simulate-ms): this is about the gateway."""
# ctest-timeout: 180
import json
import os
import re
import shutil
import signal
import tempfile
import time

import fg
from s3fake import S3Fake

IMGS = [fg.image(n) for n in ("dog.jpg", "eagle.jpg", "horses.jpg", "person.jpg")]
N = 60
token = "s3cret-admin"
root = tempfile.mkdtemp(prefix="fgt-jobs-s3-")
s3 = S3Fake(os.path.join(root, "s3"))
os.makedirs(s3.root)


def settings():
    # the frames and the jobs share the bucket and the prefix: reset must tell them apart
    return {"store": "s3://test-bucket/fg", "jobs_store": "s3://test-bucket/fg",
            "jobs_dir": os.path.join(root, "unused-jobs-dir"),
            "s3_endpoint": f"http://127.0.0.1:{s3.port}", "s3_path_style": "on",
            "s3_region": "eu-west-3", "s3_access_key": "S3RVER", "s3_secret_key": "S3RVER",
            "spool_dir": os.path.join(root, "spool"), "store_timeout_ms": 5000,
            "max_body_bytes": 24 << 20, "max_buffered_bytes": 64 << 20, "min_backends": 1,
            "max_backends": 1, "backend_concurrency": 1, "admin_token": token}


def upload(gw, n):
    parts = [("files", f"img_{i:03d}.jpg", "image/jpeg", IMGS[i % len(IMGS)]) for i in range(n)]
    body, ctype = fg.multipart(parts)
    st, _, data = gw.request("POST", "/v1/jobs", body=body, headers={"Content-Type": ctype})
    return st, (json.loads(data) if st in (202, 400, 503) else data)


def job_keys(jid, kind):
    pre = f"fg/jobs/{jid}/{kind}/"
    return sorted(int(k[len(pre):].split(".")[0]) for k in s3.keys() if k.startswith(pre))


def plant(key, data):
    with open(os.path.join(s3.root, s3.bucket, key.encode().hex()), "wb") as f:
        f.write(data)


try:
    s3.start()
    with fg.Gateway(settings=settings(), simulate_ms=40) as gw:
        st, r = upload(gw, N)
        fg.check(st == 202 and r["images"] == N, f"{N} images: 202 ({st} {r})")
        jid = r["id"]
        # answered only once they are stored: every input and the meta are in the bucket now
        fg.check(job_keys(jid, "in") == list(range(N)), f"the {N} inputs are in the bucket "
                 f"when the 202 comes ({len(job_keys(jid, 'in'))})")
        fg.check(f"fg/jobs/{jid}/meta" in s3.keys(), "the meta is in the bucket")
        fg.check(s3.read(f"fg/jobs/{jid}/in/5") == IMGS[5 % 4],
                 "a stored input is the uploaded JPEG, byte for byte")
        # an upload refused at its third part: nothing of it stays in the bucket (its first
        # parts' writes, queued from the request's own body, are dropped or deleted)
        body, ctype = fg.multipart([("files", "a.jpg", "image/jpeg", IMGS[0]),
                                    ("files", "b.jpg", "image/jpeg", IMGS[1]),
                                    ("files", "c.jpg", "image/jpeg", b"")])
        st, _, data = gw.request("POST", "/v1/jobs", body=body, headers={"Content-Type": ctype})
        fg.check(400 <= st < 500, f"an upload with an empty image is refused ({st} {data[:80]})")
        ours = f"fg/jobs/{jid}/"
        # The refused job's purge runs once its writes have landed (they may wait behind the
        # first job's result writes): its log line, not an empty bucket, says it is over. An
        # empty listing alone raced a write still queued, which then landed (and was purged).
        purged = fg.wait_for(lambda: re.search(r"event=jobs_purge prefix=jobs/(?!%s/)\S+/ "
                                               % re.escape(jid), gw.log()), 10)
        fg.check(purged is not None, "the refused upload's objects were purged")
        stray = [k for k in s3.keys() if k.startswith("fg/jobs/") and not k.startswith(ours)]
        fg.check(stray == [], f"the refused upload left nothing in the bucket ({stray[:3]})")
        # a camera's frame kept by the frame store, beside the jobs
        st, _, body = gw.detect(IMGS[0], "?camera=door&format=json")
        fg.check(st == 200, f"a camera frame answered ({st})")
        cam = json.loads(body)["stored"]
        deadline = time.time() + 30 * fg.SLOW
        while time.time() < deadline and gw.json(f"/v1/jobs/{jid}?limit=0")["counts"]["done"] < 15:
            time.sleep(0.05)
        gw.stop(sig=signal.SIGKILL)
    before = job_keys(jid, "res")
    fg.check(10 <= len(before) < N, f"killed mid-job ({len(before)} result objects in the bucket)")
    fg.check(f"fg/{cam['input']}" in s3.keys(), "the camera's frame is in the bucket")

    # the bucket is down when the gateway comes back: the load waits for it (nothing is
    # skipped, a reset is refused rather than deleting unseen jobs), then resumes the job
    s3.stop()
    with fg.Gateway(settings=settings(), simulate_ms=40) as gw:
        time.sleep(1.5)
        fg.check(gw.json("/v1/jobs")["jobs"] == [], "nothing listed while the bucket is down")
        st, _, data = gw.request("POST", "/v1/reset", body=json.dumps({"token": token}).encode(),
                                 headers={"Content-Type": "application/json"})
        fg.check(st == 503, f"a reset while the jobs cannot be read: 503 ({st} {data[:80]})")
        s3.start()
        deadline = time.time() + 60 * fg.SLOW
        j = None
        while time.time() < deadline:
            j = gw.json(f"/v1/jobs/{jid}?limit=0")
            if j is not None and j["state"] == "done":
                break
            time.sleep(0.1)
        fg.check(j is not None and j["state"] == "done"
                 and j["counts"] == {"done": N, "failed": 0, "pending": 0},
                 f"the job resumes from the bucket and completes: {j and j['counts']}")
        res = gw.json(f"/v1/jobs/{jid}?limit={N}")["results"]
        fg.check([x["name"] for x in res] == [f"img_{i:03d}.jpg" for i in range(N)]
                 and all(x["status"] == "done" for x in res),
                 f"{N} results in upload order after the restart")
        # the restart sends exactly the images without a result object, nothing twice
        served = fg.metric_value(gw.metrics(), "framegate_backend_served")
        fg.check(served == N - len(before),
                 f"the restarted gateway's backends served {served:.0f} frames: the "
                 f"{N - len(before)} images without a result, none again")
        st, h, img = gw.request("GET", f"/v1/jobs/{jid}/images/7")
        fg.check(st == 200 and img[:2] == b"\xff\xd8", f"an image read back from the bucket ({st})")
        fg.check(job_keys(jid, "res") == list(range(N)),
                 f"one result object per image, every index once ({len(job_keys(jid, 'res'))})")
        line = [ln for ln in gw.log().splitlines() if "event=job_load " in ln and jid in ln]
        fg.check(line and f"done={len(before)}" in line[0],
                 f"the restart counted the {len(before)} stored results: {line[:1]}")

        # reset: the jobs' objects go, nothing else
        plant("fg/jobsite/keep.txt", b"not a job")
        plant("other/jobs/x/meta", b"outside the prefix")
        # a camera named "jobs" keeps its frames under jobs/YYYY/...: not a job's
        camjobs = "fg/jobs/2026/11/27/22/jobs-1795818320646010-150466.jpg"
        plant(camjobs, IMGS[0])
        st, _, _ = gw.request("POST", "/v1/reset", body=b'{"token":"wrong"}',
                              headers={"Content-Type": "application/json"})
        fg.check(st == 403, f"reset with a wrong token: 403 (got {st})")
        fg.check(job_keys(jid, "in") == list(range(N)), "a refused reset deletes nothing")
        st, _, data = gw.request("POST", "/v1/reset", body=json.dumps({"token": token}).encode(),
                                 headers={"Content-Type": "application/json"})
        fg.check(st == 200 and json.loads(data)["jobs"] == 1, f"reset: 200 ({st} {data[:100]})")
        left = s3.keys()
        fg.check(not any(k.startswith("fg/jobs/") and k != camjobs for k in left),
                 f"reset deleted every job object ({sum(k.startswith('fg/jobs/') for k in left)} "
                 "left)")
        fg.check({f"fg/{cam['input']}", f"fg/{cam['result']}", "fg/jobsite/keep.txt",
                  "other/jobs/x/meta", camjobs} <= left,
                 f"the camera's frames and the other keys stay: {sorted(left)}")
        fg.check(gw.json("/v1/jobs")["jobs"] == [], "no job listed after the reset")
        # a new job after the reset works on the same bucket
        st, r = upload(gw, 4)
        fg.check(st == 202, f"a job after the reset: 202 ({st})")
        code = gw.stop()
        fg.check(code == 0, f"the gateway exits 0 on SIGTERM, writes to the bucket and all "
                 f"(got {code})")
    denied = [ln for ln in s3.log().splitlines() if re.search(r"-> 40[03] ", ln)]
    fg.check(not denied, f"the S3 server refused none of the gateway's requests ({denied[:3]})")
finally:
    s3.stop()
    shutil.rmtree(root, ignore_errors=True)
fg.finish()
