#!/usr/bin/env python3
"""Two models served at once, each with its own pool and autoscaler: load on one scales that
one up while the other stays at its min; ?model= and /v1/models/NAME/detect reach the right
pool; an unknown model is 404; /v1/models, /v1/backends and /metrics report both."""
# ctest-timeout: 120
import json
import os
import subprocess
import time

import fg

settings = {}
settings.update(fg.app_model_settings("busy"))
settings.update(fg.app_model_settings("idle"))
settings.update({
    "models": "busy,idle",
    "default_model": "idle",
    "min_backends": 1,          # both inherit min 1 ...
    "max_backends": 4,          # ... and max 4
    "model.idle.max_backends": 2,
    "scale_interval_ms": 200,
    "panic_window_ms": "1s",
    "stable_window_ms": "30s",  # no scale-down during the test
})

with fg.Gateway(settings=settings, simulate_ms=200, app_model=False) as gw:
    models = gw.json("/v1/models")
    fg.check(models is not None and models["default"] == "idle", f"/v1/models default idle ({models})")
    by = {m["name"]: m for m in (models or {}).get("models", [])}
    fg.check(sorted(by) == ["busy", "idle"], f"/v1/models lists busy and idle ({sorted(by)})")
    fg.check(by.get("idle", {}).get("default") is True and by.get("busy", {}).get("default") is False,
             "the default flag is on idle only")
    fg.check(by.get("busy", {}).get("max") == 4 and by.get("idle", {}).get("max") == 2,
             "max 4 inherited by busy, idle's own max 2")
    for key in ("kind", "preprocess", "input_size", "threshold", "ready", "backends_ready",
                "starting", "min", "max", "desired", "queued", "in_flight"):
        fg.check(all(key in m for m in by.values()), f"/v1/models reports {key}")

    # Routing: the query parameter, the path, and the default.
    img = fg.image()
    st, _, body = gw.detect(img, "?model=busy")
    r = json.loads(body)
    fg.check(st == 200 and r["model"] == "busy" and r["backend"].startswith("busy-instance"),
             f"?model=busy answered by {r.get('backend')} model {r.get('model')}")
    st, _, body = gw.request("POST", "/v1/models/idle/detect?camera=x", body=img,
                             headers={"Content-Type": "image/jpeg"})
    r = json.loads(body)
    fg.check(st == 200 and r["model"] == "idle" and r["backend"].startswith("idle-instance"),
             f"/v1/models/idle/detect answered by {r.get('backend')} model {r.get('model')}")
    st, _, body = gw.detect(img)
    fg.check(st == 200 and json.loads(body)["model"] == "idle", "no model named: the default (idle)")
    st, hdrs, body = gw.detect(img, "?model=nope")
    err = json.loads(body).get("error", {}) if body else {}
    fg.check(st == 404 and err.get("code") == "unknown_model" and "nope" in err.get("message", ""),
             f"unknown model -> 404 naming it ({st} {body[:120]!r})")
    st, _, body = gw.request("POST", "/v1/models/nope/detect", body=img,
                             headers={"Content-Type": "image/jpeg"})
    fg.check(st == 404, f"/v1/models/nope/detect -> 404 (got {st})")

    # Load on busy only: 8 clients at 200 ms per frame want 4 backends.
    load = fg.Load(gw, clients=8, query="&model=busy").start()
    deadline = time.time() + 20 * fg.SLOW
    counts = {}
    while time.time() < deadline:
        b = gw.backends()
        counts = {}
        for be in b["backends"]:
            if be["state"] in ("starting", "ready"):
                counts[be["model"]] = counts.get(be["model"], 0) + 1
        if counts.get("busy", 0) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1)  # a few more ticks: idle must still not move
    b = gw.backends()
    load.stop()
    counts = {}
    for be in b["backends"]:
        if be["state"] in ("starting", "ready"):
            counts[be["model"]] = counts.get(be["model"], 0) + 1
    fg.check(counts.get("busy", 0) > 1, f"busy scaled up past its min 1 ({counts})")
    fg.check(counts.get("idle", 0) == 1, f"idle stays at its min 1 ({counts})")
    fg.check(all(be["name"].startswith(be["model"] + "-instance") for be in b["backends"]),
             "backends are named per model")
    fg.check(not load.failures(), f"no failed frames under load ({load.statuses()})")
    per_model = {m["model"]: m for m in b.get("models", [])}
    fg.check(per_model.get("idle", {}).get("desired") == 1 and per_model.get("busy", {}).get("desired", 0) > 1,
             f"desired per model: {({k: v['desired'] for k, v in per_model.items()})}")

    m = gw.metrics()
    fg.check(fg.metric_value(m, "framegate_backends", {"model": "busy", "state": "ready"}) > 1,
             "framegate_backends{model=busy,state=ready} > 1")
    fg.check(fg.metric_value(m, "framegate_backends_desired", {"model": "idle"}) == 1,
             "framegate_backends_desired{model=idle} == 1")
    fg.check(fg.metric_value(m, "framegate_scale_events_total", {"model": "busy", "direction": "up"}) >= 1,
             "scale-up events are counted for busy")
    fg.check(fg.metric_value(m, "framegate_scale_events_total", {"model": "idle", "direction": "up"})
             == fg.metric_value(m, "framegate_scale_events_total", {"model": "idle", "reason": "min"}),
             "idle only ever started its min")
    fg.check(fg.metric_value(m, "framegate_inference_seconds_count", {"model": "busy"}) > 10,
             "inference histogram per model")
    if os.path.exists("/usr/bin/promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=m.encode(),
                           capture_output=True, timeout=30)
        fg.check(r.returncode == 0, f"/metrics passes promtool check metrics {r.stdout[:300]!r} {r.stderr[:300]!r}")
    code = gw.stop()
    fg.check(code == 0, f"gateway exits 0 on SIGTERM (got {code})")

fg.finish()
