#!/usr/bin/env python3
"""Every error the HTTP API promises, with its status and JSON body, against the real
gateway and real (simulated-inference) backends; and the gateway keeps serving after each."""
# ctest-timeout: 180
import json
import socket
import struct
import threading
import time
import zlib

import fg


def err_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def raw(gw, data, read_timeout=5, shut=False):
    """Sends raw bytes on a fresh socket, returns everything read until close/timeout."""
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=read_timeout * fg.SLOW)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except socket.timeout:
        pass
    s.close()
    return out


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


dog = fg.image("dog.jpg")
settings = {"backends": 2, "max_body_bytes": "1M", "max_header_bytes": "4K",
            "header_timeout_ms": 1000, "body_timeout_ms": 1000, "max_image_side": 4000}


def png_header(w, h):
    """A PNG's signature and IHDR (valid CRC) claiming w x h, and nothing else."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + ihdr +
            struct.pack(">I", zlib.crc32(ihdr)))

with fg.Gateway(settings=settings, simulate_ms=5) as gw:
    st, _, body = gw.detect(dog)
    fg.check(st == 200, "a good frame -> 200")

    cases = [
        ("garbage bytes as image/jpeg", b"this is not a jpeg at all", "image/jpeg", "", 415, "unsupported_media_type"),
        ("a GIF", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif", "", 415, "unsupported_media_type"),
        ("PNG header claiming 100000 x 100000 (a decompression bomb)", png_header(100000, 100000), "image/png", "", 413, "image_too_large"),
        ("PNG wider than max_image_side", png_header(4001, 10), "image/png", "", 413, "image_too_large"),
        ("PNG signature, broken header", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDX", "image/png", "", 400, "bad_image"),
        ("truncated JPEG", dog[:200], "image/jpeg", "", 400, "bad_image"),
        ("empty body", b"", "image/jpeg", "", 400, "empty_image"),
        ("bad JSON", b"{\"image\": ", "application/json", "", 400, "bad_json"),
        ("JSON without image", b"{\"camera\": \"x\"}", "application/json", "", 400, None),
        ("bad base64", b"{\"image\": \"!!!not base64!!!\"}", "application/json", "", 400, "bad_base64"),
        ("unsupported type", b"hello", "text/plain", "", 415, "unsupported_media_type"),
        ("threshold out of range", dog, "image/jpeg", "?threshold=2", 400, "bad_query"),
        ("threshold not a number", dog, "image/jpeg", "?threshold=abc", 400, "bad_query"),
        ("multipart without boundary", b"--x\r\n", "multipart/form-data", "", 400, None),
    ]
    for what, data, ctype, q, want, code in cases:
        st, hdrs, body = gw.detect(data, q, content_type=ctype)
        got = err_code(body)
        fg.check(st == want and got is not None and (code is None or got == code),
                 f"{what} -> {want} {code or ''} (got {st} {body[:120]!r})")
        fg.check(hdrs.get("content-type", "").startswith("application/json"), f"{what}: JSON error body")

    st, _, body = gw.request("GET", "/nope")
    fg.check(st == 404 and err_code(body) == "not_found", f"unknown path -> 404 (got {st})")
    st, hdrs, body = gw.request("GET", "/v1/detect")
    fg.check(st == 405 and "POST" in hdrs.get("allow", ""), f"GET /v1/detect -> 405 with Allow (got {st})")
    st, _, body = gw.request("DELETE", "/v1/backends")
    fg.check(st == 405, f"DELETE /v1/backends -> 405 (got {st})")

    # 411: POST without a length
    resp = raw(gw, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n\r\n")
    fg.check(status_of(resp) in (411, 400), f"POST without length -> 411 (got {resp[:40]!r})")

    # 413: answered from the headers, without reading (or waiting for) the body
    t0 = time.time()
    resp = raw(gw, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                   b"Content-Length: 50000000\r\n\r\n" + b"x" * 1000)
    fg.check(status_of(resp) == 413, f"body over the limit -> 413 (got {resp[:40]!r})")
    fg.check(time.time() - t0 < 3 * fg.SLOW, "413 without waiting for the body")
    fg.check(b"too_large" in resp, "413 body names too_large")

    # 413 for a chunked body that grows over the limit
    chunk = b"x" * 65536
    data = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n"
    data += (b"10000\r\n" + chunk + b"\r\n") * 20
    resp = raw(gw, data)
    fg.check(status_of(resp) == 413, f"chunked body over the limit -> 413 (got {resp[:40]!r})")

    # chunked body within the limit is a normal frame
    data = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    for i in range(0, len(dog), 30000):
        part = dog[i:i + 30000]
        data += b"%x\r\n" % len(part) + part + b"\r\n"
    data += b"0\r\n\r\n"
    resp = raw(gw, data)
    fg.check(status_of(resp) == 200 and b'"width":768' in resp, f"chunked upload -> 200 (got {resp[:60]!r})")

    # header over the limit
    resp = raw(gw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
    fg.check(status_of(resp) == 431, f"header over the limit -> 431 (got {resp[:40]!r})")

    # slow client: headers never finish -> cut by the header timeout
    t0 = time.time()
    resp = raw(gw, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\n", read_timeout=10)
    took = time.time() - t0
    fg.check(took < 5 * fg.SLOW, f"slow headers cut after the header timeout ({took:.1f} s)")
    fg.check(status_of(resp) in (408, None), f"slow headers -> 408 or close (got {resp[:40]!r})")

    # slow body: headers complete, the body never arrives
    t0 = time.time()
    resp = raw(gw, b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                   b"Content-Length: 1000\r\n\r\nabc", read_timeout=10)
    took = time.time() - t0
    fg.check(took < 5 * fg.SLOW and status_of(resp) in (408, None),
             f"slow body cut after the body timeout ({took:.1f} s, {resp[:40]!r})")

    # garbage instead of HTTP
    resp = raw(gw, b"\x00\x01\x02 not http\r\n\r\n")
    fg.check(status_of(resp) == 400, f"non-HTTP bytes -> 400 (got {resp[:40]!r})")

    # pipelined requests on one connection answered in order
    req = (b"POST /v1/detect?camera=p%d HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
           b"Content-Length: %d\r\n\r\n")
    data = b"".join(req % (i, len(dog)) + dog for i in range(4))
    data += b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = raw(gw, data, read_timeout=20)
    cams = [resp.find(b'"camera":"p%d"' % i) for i in range(4)]
    fg.check(all(c >= 0 for c in cams) and cams == sorted(cams) and resp.count(b"HTTP/1.1 200") == 5,
             f"5 pipelined requests answered in order (positions {cams})")

    # still serving after all of that
    st, _, _ = gw.detect(dog)
    fg.check(st == 200, "still serving after the bad requests")
    fg.check(gw.proc.poll() is None, "gateway still running")

# Queue full -> 503 + Retry-After; deadline -> 504.
# camera_max_age_ms = 0: these frames name cameras, which would be skipped (200
# "skipped") before they could reach their deadline; this checks the deadline itself.
with fg.Gateway(settings={"backends": 1, "queue_size": 2, "deadline_ms": 1500,
                          "camera_max_age_ms": 0},
                simulate_ms=700) as gw:
    results = []
    lock = threading.Lock()

    def one(i):
        st, hdrs, body = gw.detect(dog, f"?camera=q{i}", timeout=30)
        with lock:
            results.append((st, hdrs.get("retry-after"), err_code(body)))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
        time.sleep(0.02)
    for t in ts:
        t.join(60)
    codes = sorted(r[0] for r in results)
    full = [r for r in results if r[0] == 503]
    fg.check(len(results) == 8, "every client got an answer")
    fg.check(len(full) >= 4 and all(r[1] is not None and r[2] == "queue_full" for r in full),
             f"queue full -> 503 queue_full with Retry-After ({codes})")
    late = [r for r in results if r[0] == 504]
    fg.check(len(late) >= 1 and all(r[2] == "deadline" for r in late),
             f"a queued request past its deadline -> 504 deadline ({codes})")
    fg.check(all(r[0] in (200, 503, 504) for r in results), f"only 200/503/504 ({codes})")

fg.finish()
