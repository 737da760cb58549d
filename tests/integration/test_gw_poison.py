#!/usr/bin/env python3
"""Issue 11, items 1, 4 and the PNG bomb of 10: one bad frame must never take a backend down.
A real gateway with two real backends of the default face model; 1000 valid frames (250 under
ASan; dog.jpg and person.jpg, raw image/jpeg, a few concurrent keep-alive clients) interleaved
with poison frames that broke a backend for good before (its reused libjpeg-turbo handle then
answered every later JPEG with 400 "Bogus marker length") or cost it seconds of CPU (a
progressive-JPEG scan bomb), and two 4000x3000 PNGs (36 MB of pixels each, valid): every valid
frame is answered 200, every poison 400/413/415 with a JSON error, and both backends are still
the same ready processes at the end.

How the poison frames are made (from dog.jpg, a baseline JPEG whose SOF0 segment is
FF C0 | length | precision | height | width | ...):
- the probe's request itself, JSON {"image":"/9j/wA=="} (4 bytes: FF D8 FF C0, a SOF0 marker
  and nothing else), and the same with one length byte more (FF D8 FF C0 00);
- dog.jpg cut at 160 bytes (inside its EXIF segment: no frame header at all);
- SOF height = width = 0; SOF precision 12; the marker patched to C3 (lossless);
- dog.jpg cut inside its scan data, and with 64 bytes of its scan data overwritten;
- scan bombs: a 64x64 progressive JPEG (PIL, libjpeg's standard script, whose first scan is
  the interleaved DC scan with Ah = 0, Al = 1) rebuilt as its headers + that first scan 10,000
  times + EOI. With Al patched to 0 every copy is a legal DC first scan (no libjpeg warning:
  only counting scans stops it); unpatched, every copy after the first is an "inconsistent
  progression" warning.
"""
# ctest-timeout: 300
import base64
import io
import json
import queue
import random
import threading
import time
import zlib
import struct

from PIL import Image

import fg

# 1000 valid frames take ~14 s here; under ASan (a Debug build: ~15x slower forward passes)
# a quarter of them still interleaves every poison frame with valid ones many times over.
VALID = 250 if fg.SANITIZE else 1000
CLIENTS = 4
ROUNDS = 6  # each poison frame is posted this many times, spread over the run


def segment(b, marker):
    """Offset of the first marker segment `marker` before the first scan."""
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF:
        if b[i + 1] == marker:
            return i
        if b[i + 1] == 0xDA:
            break
        i += 2 + (b[i + 2] << 8 | b[i + 3])
    raise ValueError(f"no marker {marker:#x}")


def scan_end(b, i):
    """End of the entropy-coded data starting at i: the next FF that is not FF00 or RSTn."""
    while i + 1 < len(b):
        if b[i] == 0xFF and b[i + 1] != 0 and not 0xD0 <= b[i + 1] <= 0xD7:
            return i
        i += 1
    return len(b)


def scan_bomb(n, al0):
    img = Image.new("RGB", (64, 64))
    img.putdata([((x * 7) % 256, (y * 5) % 256, (x * y) % 256)
                 for y in range(64) for x in range(64)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, progressive=True)
    j = bytearray(buf.getvalue())
    sos = segment(j, 0xDA)
    hdr = 2 + (j[sos + 2] << 8 | j[sos + 3])
    assert j[sos + hdr - 3] == 0 and j[sos + hdr - 2] == 0 and j[sos + hdr - 1] == 0x01, \
        "the first scan is DC, Ah=0 Al=1"
    if al0:
        j[sos + hdr - 1] = 0
    one = bytes(j[sos:scan_end(j, sos + hdr)])
    return bytes(j[:sos]) + one * n + b"\xff\xd9"


def big_png(w, h):
    """A w x h RGB PNG of a diagonal line: 36 MB of pixels in a few hundred KB."""
    rows = []
    for y in range(h):
        row = bytearray(w * 3)
        if y < w:
            row[y * 3] = 255
        rows.append(b"\x00" + bytes(row))
    raw = zlib.compress(b"".join(rows), 6)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


dog = fg.image("dog.jpg")
person = fg.image("person.jpg")
sof = segment(dog, 0xC0)


def patched(off, data):
    b = bytearray(dog)
    b[off:off + len(data)] = data
    return bytes(b)


corrupt = bytearray(dog)
corrupt[len(dog) // 2:len(dog) // 2 + 64] = b"\xff" * 64
poisons = [
    ("the probe's request: JSON {\"image\":\"/9j/wA==\"}", b'{"image":"/9j/wA=="}',
     "application/json"),
    ("5-byte header FF D8 FF C0 00", b"\xff\xd8\xff\xc0\x00", "image/jpeg"),
    ("cut at 160 bytes", dog[:160], "image/jpeg"),
    ("SOF says 0x0", patched(sof + 5, b"\0\0\0\0"), "image/jpeg"),
    ("12-bit precision", patched(sof + 4, b"\x0c"), "image/jpeg"),
    ("lossless (SOF3)", patched(sof + 1, b"\xc3"), "image/jpeg"),
    ("cut inside the scan", dog[:len(dog) // 2], "image/jpeg"),
    ("corrupt scan data", bytes(corrupt), "image/jpeg"),
    ("scan bomb, 10000 legal scans", scan_bomb(10000, True), "image/jpeg"),
    ("scan bomb, 10000 inconsistent scans", scan_bomb(10000, False), "image/jpeg"),
]
fg.check(base64.b64decode("/9j/wA==") == b"\xff\xd8\xff\xc0", "the probe's 4 bytes: FF D8 FF C0")
fg.log("scan bomb sizes:", [len(p[1]) for p in poisons[-2:]])
png = big_png(4000, 3000)  # valid, inside the limits: decoded, answered, then released

# The work: valid frames and poison frames in a shuffled (seeded) order, pulled by CLIENTS
# keep-alive clients at once, so poison and valid frames are in flight together.
work = [("valid", "dog.jpg", dog, "image/jpeg") if i % 2 == 0 else
        ("valid", "person.jpg", person, "image/jpeg") for i in range(VALID)]
work += [("poison",) + p for p in poisons for _ in range(ROUNDS)]
work += [("valid", "4000x3000 PNG", png, "image/png") for _ in range(2)]
random.Random(11).shuffle(work)
todo = queue.Queue()
for w in work:
    todo.put(w)
results = []
lock = threading.Lock()


def client(gw, idx):
    c = None
    while True:
        try:
            kind, what, body, ctype = todo.get_nowait()
        except queue.Empty:
            break
        try:
            if c is None:
                c = gw.conn(60)
            st, hdrs, data = gw.detect(body, f"?camera=poison-{idx}", content_type=ctype, conn=c)
            if hdrs.get("connection", "").lower() == "close":
                c.close()
                c = None
        except Exception as e:  # a dropped connection is a failure like any other
            st, hdrs, data = "exc:" + type(e).__name__, {}, b""
            if c is not None:
                c.close()
            c = None
        with lock:
            results.append((kind, what, st, hdrs.get("content-type", ""), data))
    if c is not None:
        c.close()


def err_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


# camera_max_age_ms 0: the clients name cameras, and a valid frame queued behind slow poison
# must still be served, not skipped as stale (a 200 without detections)
settings = {"models": "face", "backends": 2, "deadline_ms": int(30000 * fg.SLOW),
            "camera_max_age_ms": 0}
with fg.Gateway(settings=settings, app_model=False) as gw:
    # /readyz answers 200 with one ready backend: wait (bounded) for the second as well.
    end = time.time() + 60 * fg.SLOW
    while time.time() < end:
        before = gw.backends()["backends"]
        if len(before) == 2 and all(b["state"] == "ready" for b in before):
            break
        time.sleep(0.1)
    fg.check(len(before) == 2 and all(b["state"] == "ready" for b in before),
             f"two ready backends to start with ({[b['state'] for b in before]})")
    pids = sorted(gw.backend_pids())
    t0 = time.time()
    threads = [threading.Thread(target=client, args=(gw, i), daemon=True) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180 * fg.SLOW)
    took = time.time() - t0
    fg.log(f"{len(results)} requests in {took:.1f} s")
    fg.check(len(results) == len(work), f"every request answered ({len(results)}/{len(work)})")

    valid = [r for r in results if r[0] == "valid"]
    bad_valid = [r for r in valid if r[2] != 200]
    fg.check(len(valid) == VALID + 2 and not bad_valid,
             f"every valid frame -> 200 ({len(valid) - len(bad_valid)}/{len(valid)}; first "
             f"failures: {[(r[1], r[2], r[4][:100]) for r in bad_valid[:5]]})")
    fg.check(all(r[2] != 200 or "detections" in json.loads(r[4]) for r in valid),
             "every 200 is a detection result")
    by = {}
    for kind, what, st, ctype, data in results:
        if kind == "poison":
            by.setdefault(what, []).append((st, ctype, err_code(data), data[:160]))
    for what, _, _ in poisons:
        got = by.get(what, [])
        ok = len(got) == ROUNDS and all(
            st in (400, 413, 415) and ct.startswith("application/json") and code is not None
            for st, ct, code, _ in got)
        fg.check(ok, f"{what} -> 4xx with a JSON error every time ({got[:1]})")
    bomb = by.get("scan bomb, 10000 legal scans", [(None, "", None, b"")])[0][3]
    fg.check(b"scans" in bomb, f"the scan bomb's error names the cause ({bomb!r})")

    after = gw.backends()["backends"]
    fg.check(len(after) == 2 and all(b["state"] == "ready" for b in after),
             f"both backends ready at the end ({[b['state'] for b in after]})")
    fg.check(sorted(gw.backend_pids()) == pids,
             f"the same two backend processes: none crashed or was replaced ({pids}); "
             f"{[l for l in gw.log().splitlines() if 'eject' in l or 'suspect' in l][:4]}")
    st, _, _ = gw.request("GET", "/readyz")
    fg.check(st == 200, "/readyz 200 at the end")
    # And one more of each valid frame, now that every poison has been seen by both.
    for name, img in (("dog.jpg", dog), ("person.jpg", person)):
        for _ in range(2):
            st, _, body = gw.detect(img)
            fg.check(st == 200, f"{name} after all the poison -> 200 ({st} {body[:80]!r})")

# The backends' own reports at exit (ASan, LSan, UBSan print into the gateway's log).
log = gw.log()
fg.check("Sanitizer" not in log and "runtime error" not in log,
         "no sanitizer report from the gateway or the backends")
fg.finish()
