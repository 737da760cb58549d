#!/usr/bin/env python3
"""precision = bf16, per model, end to end: the gateway serves the face model twice, "face" at
the default fp32 and "facebf" with `model.facebf.precision = bf16`; only facebf's backend is
started with --precision bf16, and on face frames (JPEG, from scripts/models.sh) both models
find the same faces within the tolerance test_be_bf16 holds (IoU >= 0.97, score +-0.03). On a
CPU with AVX512_BF16 the bf16 backend runs bf16 (no fallback line in the log); elsewhere it
says it runs fp32, and still answers. Then the fallback for real: oneDNN told its ISA stops at
AVX512_CORE (DNNL_MAX_CPU_ISA), the bf16 model serves fp32's answers and says so once."""
# ctest-timeout: 180
import json
import os
import time

import fg

REF = os.path.join(fg.cache_dir(), "faceapi-ref")
FRAMES = ["frame-720p-face.jpg", "frame-1080p-faces.jpg", "astronaut-gray.jpg"]


def cmdlines(parent):
    """The argv of every child of `parent` (the gateway's backends)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    out.append(f.read().split(b"\0"))
        except (OSError, ValueError, IndexError):
            pass
    return out


with open("/proc/cpuinfo") as f:
    has_bf16 = "avx512_bf16" in f.read()

settings = {
    "models": "face,facebf",
    "default_model": "face",
    "min_backends": 1,
    "max_backends": 1,
    **fg.face_model_settings("facebf"),
    "model.facebf.precision": "bf16",
}
with fg.Gateway(settings=settings, app_model=False) as gw:
    for _ in range(int(100 * fg.SLOW)):  # both pools up
        models = gw.json("/v1/models") or {"models": []}
        if all(m.get("backends_ready", 0) >= 1 for m in models["models"]):
            break
        time.sleep(0.1)
    args = {}
    for argv in cmdlines(gw.proc.pid):
        if b"--model-name" in argv:
            args[argv[argv.index(b"--model-name") + 1].decode()] = argv
    fg.check(sorted(args) == ["face", "facebf"], f"one backend per model ({sorted(args)})")
    bf = args.get("facebf", [])
    fg.check(b"--precision" in bf and bf[bf.index(b"--precision") + 1] == b"bf16",
             "facebf's backend runs with --precision bf16")
    fg.check(b"--precision" not in args.get("face", []), "face's backend keeps the default (fp32)")

    pairs = 0
    fp32 = {}
    for name in FRAMES:
        with open(os.path.join(REF, name), "rb") as f:
            img = f.read()
        ans = {}
        for model in ("face", "facebf"):
            st, _, body = gw.detect(img, f"?model={model}")
            r = json.loads(body) if st == 200 else {}
            fg.check(st == 200 and r.get("model") == model, f"{name} -> 200 from {model} ({st})")
            ans[model] = r.get("detections", [])
        a, b = ans["face"], ans["facebf"]
        fp32[name] = a
        fg.log(f"{name}: fp32 {[round(d['confidence'], 4) for d in a]}, "
               f"bf16 {[round(d['confidence'], 4) for d in b]}")
        fg.check(len(a) == len(b) and len(a) > 0, f"{name}: the same number of faces ({len(a)}, {len(b)})")
        for d in a:
            best = max(b, key=lambda e: fg.iou(d["box"], e["box"]), default=None)
            ok = best is not None and fg.iou(d["box"], best["box"]) >= 0.97 and \
                abs(d["confidence"] - best["confidence"]) <= 0.03
            fg.check(ok, f"{name}: fp32 face {d['confidence']:.4f} paired in bf16")
            pairs += ok
    fg.check(pairs >= len(FRAMES), f"{pairs} faces paired")
    log = gw.log()
    # (a backend's stderr lines reach the log at info, as event=backend_output, unless they
    # are darknet's parser chatter: the fallback's line is not)
    if has_bf16:
        fg.check("bf16 not available" not in log, "this CPU has AVX512_BF16: no fallback")
    else:
        fg.check("bf16 not available" in log, "no AVX512_BF16 here: the backend says it runs fp32")

# The fallback on a CPU without bf16, as oneDNN sees one when told its ISA stops at AVX512_CORE
# (DNNL_MAX_CPU_ISA, inherited by the backends): facebf still serves, fp32's very answers, and
# its backend says so once in the log.
with fg.Gateway(settings=dict(settings, models="facebf", default_model="facebf"),
                app_model=False, env={"DNNL_MAX_CPU_ISA": "AVX512_CORE"}) as gw:
    with open(os.path.join(REF, FRAMES[0]), "rb") as f:
        st, _, body = gw.detect(f.read(), "?model=facebf")
    got = json.loads(body).get("detections", []) if st == 200 else []
    want = fp32.get(FRAMES[0], [])
    same = st == 200 and len(got) == len(want) > 0 and all(
        fg.iou(g["box"], w["box"]) >= 0.999 and abs(g["confidence"] - w["confidence"]) <= 2e-4
        for g, w in zip(got, want))
    fg.check(same, f"bf16 refused: facebf answers fp32's faces ({got} vs {want})")
    lines = [l for l in gw.log().splitlines() if "bf16 not available" in l]
    fg.check(len(lines) == 1 and "running fp32" in lines[0],
             f"one line says bf16 is not available ({lines})")
fg.finish()
