"""Locust scenario for framegate, for people who already use Locust (Debian: python3-locust).

The same frames and endpoint as framegate-bench --body-mode base64: each simulated camera
POSTs a base64 JPEG in JSON to /v1/detect with no wait time, like the reference
experiments (1000 users at 100 users/s):

    locust -f bench/locustfile.py --headless -u 1000 -r 100 -t 60s --host http://127.0.0.1:8080

FG_BENCH_IMAGE picks the frame (default: darknet's dog.jpg).
"""
import base64
import itertools
import json
import os

from locust import HttpUser, constant, task

IMAGE = os.environ.get("FG_BENCH_IMAGE", "/usr/share/darknet/data/dog.jpg")
with open(IMAGE, "rb") as f:
    B64 = base64.b64encode(f.read()).decode()
_ids = itertools.count(1)


class Camera(HttpUser):
    wait_time = constant(0)

    def on_start(self):
        self.camera = f"cam-{next(_ids)}"
        self.body = json.dumps({"image": B64, "camera": self.camera})

    @task
    def detect(self):
        with self.client.post("/v1/detect", data=self.body,
                              headers={"Content-Type": "application/json"},
                              name="/v1/detect", catch_response=True) as r:
            # Only the status decides, exactly as framegate-bench counts, so the two agree.
            if not 200 <= r.status_code < 300:
                r.failure(f"HTTP {r.status_code}")
            else:
                r.success()
