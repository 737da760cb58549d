#!/usr/bin/env python3
"""Live cameras: N push cameras at F fps (open loop) over the autoscaled pool (min 1, max
MAX backends of SIM ms simulated inference), once with the camera rules (fair shares, fresh
frames) and once as a plain FIFO (max_cameras = 0: today's behaviour before cameras), same
machine, same run. Per camera: served fps (results), frame age p50/p95 at answer (the
gateway's total_ms of each result), superseded, skipped and failed counts. Writes
bench/results/7_cameras/{cameras,fifo}.csv, summary.json and plot.png (gnuplot).

    python3 bench/scenarios/7_cameras.py      # N=20 F=5 MAX=4 SIM=100 DURATION=30

Counted over the frames sent between WARMUP and DURATION, answered by DURATION + 2 s: the
FIFO's "served fps" is what reached the cameras in time to count, not the pool's throughput
(it serves as many frames, but ever older ones; the rest are "unanswered" at the end).
"""
import json
import os
import shutil
import subprocess
import sys
import time

repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(repo, "tests", "integration"))
os.environ.setdefault("FG_BIN_DIR", os.path.join(os.environ.get("BUILD_DIR", repo + "/build"), "bin"))
os.environ.setdefault("FG_SOURCE_DIR", repo)
import fg  # noqa: E402
from camfeed import PushCamera  # noqa: E402

N = int(os.environ.get("N", 20))
F = float(os.environ.get("F", 5))
MAX = int(os.environ.get("MAX", 4))
SIM = int(os.environ.get("SIM", 100))
DURATION = float(os.environ.get("DURATION", 30))
WARMUP = 5.0
out = os.path.join(repo, "bench", "results", "7_cameras")
os.makedirs(out, exist_ok=True)
img = fg.image("dog.jpg")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] if xs else None


def run(variant):
    settings = {"min_backends": 1, "max_backends": MAX, "scale_interval_ms": 250,
                "panic_window_ms": 2000, "max_pipelined": 256, "camera_max_age_ms": 1000,
                "max_cameras": 32 if variant == "cameras" else 0}
    rows = []
    with fg.Gateway(settings=settings, simulate_ms=SIM) as gw:
        cams = [PushCamera(gw, f"cam-{i:02d}", F, img) for i in range(N)]
        t0 = time.time()
        for i, c in enumerate(cams):
            c.start(phase=(i / N) / F)
        time.sleep(DURATION)
        for c in cams:
            c.stop.set()
        time.sleep(2)
        for c in cams:
            c.close()
        w0, w1 = t0 + WARMUP, t0 + DURATION
        for c in cams:
            res = c.results(w0, w1)
            ages = [a[3]["timing"]["total_ms"] for a in res]
            st = [a[3].get("status") if a[3] else None for a in c.answers if a[0] and w0 <= a[0] < w1]
            failed = sum(1 for a in c.answers if a[0] and w0 <= a[0] < w1 and a[2] != 200)
            rows.append({"camera": c.name, "served_fps": len(res) / (w1 - w0),
                         "age_p50_ms": pct(ages, 0.5), "age_p95_ms": pct(ages, 0.95),
                         "superseded": st.count("superseded"), "skipped": st.count("skipped"),
                         "failed": failed, "unanswered": len(c.sent) - len(c.answers)})
    with open(os.path.join(out, f"{variant}.csv"), "w") as f:
        f.write("camera,served_fps,age_p50_ms,age_p95_ms,superseded,skipped,failed,unanswered\n")
        for r in rows:
            f.write(",".join(str(r[k]) for k in ("camera", "served_fps", "age_p50_ms", "age_p95_ms",
                                                 "superseded", "skipped", "failed", "unanswered"))
                    + "\n")
    fps = [r["served_fps"] for r in rows]
    p95 = [r["age_p95_ms"] for r in rows if r["age_p95_ms"] is not None]
    return {"variant": variant, "served_fps_min": min(fps), "served_fps_max": max(fps),
            "served_fps_total": sum(fps), "age_p95_ms_max": max(p95) if p95 else None,
            "age_p95_ms_median": pct(p95, 0.5),
            "superseded": sum(r["superseded"] for r in rows),
            "skipped": sum(r["skipped"] for r in rows),
            "failed": sum(r["failed"] for r in rows),
            "unanswered": sum(r["unanswered"] for r in rows)}


summary = {"cameras": N, "fps_each": F, "max_backends": MAX, "simulate_ms": SIM,
           "duration_s": DURATION, "warmup_s": WARMUP,
           "runs": [run("cameras"), run("fifo")]}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print(json.dumps(summary, indent=1))
if shutil.which("gnuplot"):
    script = f"""
set terminal pngcairo size 1200,500
set output '{out}/plot.png'
set datafile separator ','
set multiplot layout 1,2 title '{N} cameras at {F:g} fps, {SIM} ms inference, 1..{MAX} backends'
set style data histograms
set style fill solid 0.8
set xtics rotate by -60 font ',8'
set ylabel 'served fps'
plot '{out}/cameras.csv' using 2:xtic(1) title 'cameras (fair, fresh)', '{out}/fifo.csv' using 2 title 'FIFO'
set ylabel 'frame age p95 at answer (ms)'
set logscale y
plot '{out}/cameras.csv' using 4:xtic(1) title 'cameras', '{out}/fifo.csv' using 4 title 'FIFO'
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=False)

