#!/usr/bin/env python3
"""framegate-bench against the real gateway with simulated backends: its request count
equals the gateway's own framegate_requests_total; its CSV and JSON are complete; and
bench/locustfile.py runs headless under Debian's Locust with every request succeeding."""
# ctest-timeout: 120
import csv
import json
import os
import shutil
import subprocess
import tempfile

import fg

out = tempfile.mkdtemp(prefix="fgbench-")
with fg.Gateway(settings={"min_backends": 1, "max_backends": 2, "scale_interval_ms": 200},
                simulate_ms=20) as gw:
    for mode in ("raw", "base64", "multipart"):
        before = fg.metric_value(gw.metrics(), "framegate_requests_total", {"route": "detect"})
        j, c = os.path.join(out, f"{mode}.json"), os.path.join(out, f"{mode}.csv")
        r = subprocess.run([os.path.join(fg.BIN, "framegate-bench"), "--url",
                            f"http://127.0.0.1:{gw.port}/v1/detect", "--users", "8",
                            "--spawn-rate", "16", "--duration", "3", "--body-mode", mode,
                            "--json", j, "--csv", c, "--quiet"],
                           capture_output=True, text=True, timeout=60)
        fg.check(r.returncode == 0, f"{mode}: bench exits 0 {r.stderr[-300:]}")
        s = json.load(open(j))
        after = fg.metric_value(gw.metrics(), "framegate_requests_total", {"route": "detect"})
        fg.check(s["requests"] > 20 and s["failures"] == 0,
                 f"{mode}: {s['requests']} requests, {s['failures']} failures")
        fg.check(after - before == s["requests"],
                 f"{mode}: bench count {s['requests']} == gateway count {after - before:.0f}")
        rows = list(csv.DictReader(open(c)))
        fg.check(len(rows) >= 3 and sum(int(x["ok"]) for x in rows) == s["ok"],
                 f"{mode}: CSV rows add up to the summary ({len(rows)} rows)")
        fg.check(any(x["backends_ready"] not in ("", "0") for x in rows),
                 f"{mode}: CSV carries the backend count")
        fg.check(0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p99"] <= s["latency_ms"]["max"],
                 f"{mode}: percentiles ordered {s['latency_ms']}")

    locust = shutil.which("locust")
    fg.check(locust is not None, "Debian's locust is installed (scripts/setup.sh)")
    if locust:
        before = fg.metric_value(gw.metrics(), "framegate_requests_total", {"route": "detect"})
        stats = os.path.join(out, "locust")
        r = subprocess.run([locust, "-f", os.path.join(fg.SRC, "bench", "locustfile.py"),
                            "--headless", "-u", "5", "-r", "5", "-t", "4s", "--host",
                            f"http://127.0.0.1:{gw.port}", "--csv", stats, "--only-summary"],
                           capture_output=True, text=True, timeout=60)
        rows = list(csv.DictReader(open(stats + "_stats.csv"))) if os.path.exists(stats + "_stats.csv") else []
        agg = [x for x in rows if x["Name"] == "Aggregated"]
        n = int(agg[0]["Request Count"]) if agg else 0
        failed = int(agg[0]["Failure Count"]) if agg else -1
        after = fg.metric_value(gw.metrics(), "framegate_requests_total", {"route": "detect"})
        fg.check(n > 0 and failed == 0, f"locust: {n} requests, {failed} failures (rc {r.returncode})")
        # Locust drops from its stats what is in flight when -t expires; the gateway answered
        # at least what Locust counted, and nothing failed.
        fg.check(after - before >= n, f"gateway answered {after - before:.0f} >= locust's {n}")
        fg.check(fg.metric_value(gw.metrics(), "framegate_requests_total", {"route": "detect", "code": "503"}) == 0,
                 "no 503 at the gateway during the locust run")
shutil.rmtree(out, ignore_errors=True)
fg.finish()
