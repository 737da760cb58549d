#!/usr/bin/env python3
"""Frames given by URL ({"url": ...} / {"urls": [...]}) against a local HTTP server.

The server is on 127.0.0.1, which the fetch policy refuses by default, so the gateway that
must reach it allow-lists exactly 127.0.0.1 (fetch_allow); a second gateway with no
allow-list shows the default refusal. Cases: a JPEG answered (and stored with its keys); a
redirect to 169.254.169.254 (cloud metadata), to 10.0.0.1 (private) and to 127.0.0.2
(loopback, not allow-listed) refused before connecting; a name allow-listed (localhost)
redirecting to a literal loopback address refused; a redirect chain longer than
fetch_max_redirects; a URL that trickles bytes cut at fetch_timeout_ms; a "1 GB" URL cut at
max_body_bytes (with a Content-Length, and chunked without one); HTML is 415; a 404 is
url_status; non-http schemes refused; several URLs in one request."""
# ctest-timeout: 120
import http.server
import json
import os
import shutil
import tempfile
import threading
import time

import fg

DOG = fg.image("dog.jpg")
EAGLE = fg.image("eagle.jpg")
hits = {"trickle": 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, status, body, ctype="image/jpeg", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        if path == "/dog.jpg":
            return self.send(200, DOG)
        if path == "/eagle.jpg":
            return self.send(200, EAGLE, ctype="application/octet-stream")
        if path == "/redirect":
            return self.send(302, b"", extra={"Location": query})
        if path.startswith("/chain/"):
            n = int(path.split("/")[2])
            loc = f"/chain/{n - 1}" if n > 0 else "/dog.jpg"
            return self.send(302, b"", extra={"Location": loc})
        if path == "/page.html":
            return self.send(200, b"<!doctype html><html><body>cat</body></html>",
                             ctype="text/html")
        if path == "/missing.jpg":
            return self.send(404, b"not found", ctype="text/plain")
        if path == "/trickle.jpg":  # one byte every 200 ms, for ever
            hits["trickle"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            try:
                for _ in range(600):
                    self.wfile.write(b"\xff")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if path == "/huge.jpg":  # claims 1 GB
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            return self.stream()
        if path == "/huge-chunked.jpg":  # 1 GB without a length
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            return self.stream(chunked=True)
        return self.send(404, b"", ctype="text/plain")

    def stream(self, chunked=False):
        block = DOG[:3] + bytes(65533)
        try:
            for _ in range((1 << 30) // len(block)):
                if chunked:
                    self.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                else:
                    self.wfile.write(block)
        except OSError:
            pass  # the gateway hung up: that is the point
        self.close_connection = True


http.server.ThreadingHTTPServer.daemon_threads = True
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
base = f"http://127.0.0.1:{srv.server_address[1]}"
port = srv.server_address[1]


def post(gw, doc, timeout=30):
    st, _, body = gw.request("POST", "/v1/detect", body=json.dumps(doc).encode(),
                             headers={"Content-Type": "application/json"}, timeout=timeout)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, body


def code(r):
    return r.get("error", {}).get("code") if isinstance(r, dict) else None


tmp = tempfile.mkdtemp(prefix="fgt-url-")
root = os.path.join(tmp, "objects")
settings = {"backends": 1, "fetch_allow": "127.0.0.1", "fetch_timeout_ms": 1500,
            "fetch_connect_timeout_ms": 1000, "fetch_max_redirects": 2,
            "max_body_bytes": "2M", "store": f"dir:{root}"}
with fg.Gateway(settings=settings, simulate_ms=1) as gw:
    st, r = post(gw, {"url": f"{base}/dog.jpg", "camera": "web"})
    fg.check(st == 200 and (r["width"], r["height"]) == (768, 576),
             f"a JPEG URL on the allow-listed 127.0.0.1 is answered (got {st} {r})")
    key = os.path.join(root, r["stored"]["input"]) if st == 200 else "/nonexistent"
    deadline = time.time() + 10
    while not os.path.exists(key) and time.time() < deadline:
        time.sleep(0.05)
    fg.check(st == 200 and r["camera"] == "web" and open(key, "rb").read() == DOG,
             "it is kept like an upload: the stored input is the fetched JPEG")
    st, r = post(gw, {"urls": [f"{base}/dog.jpg", f"{base}/eagle.jpg"]})
    fg.check(st == 200 and [x["width"] for x in r["results"]] == [768, 773],
             f"urls: two frames, two results in order (got {st})")
    st, r = post(gw, {"url": f"{base}/chain/1"})
    fg.check(st == 200, f"a redirect within fetch_max_redirects is followed (got {st} {r})")

    for target, what in (("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
                         ("http://10.0.0.1/x.jpg", "a private address"),
                         (f"http://127.0.0.2:{port}/dog.jpg", "another loopback address"),
                         (f"http://[::1]:{port}/dog.jpg", "IPv6 loopback"),
                         ("http://[::ffff:169.254.169.254]/", "IPv4-mapped link-local")):
        t0 = time.time()
        st, r = post(gw, {"url": f"{base}/redirect?{target}"})
        fg.check(st == 403 and code(r) == "url_forbidden",
                 f"a redirect to {what} is 403 url_forbidden (got {st} {r})")
        fg.check(time.time() - t0 < 1.0, f"... refused before connecting ({time.time() - t0:.2f} s)")
    st, r = post(gw, {"url": f"{base}/chain/5"})
    fg.check(st == 422 and code(r) == "url_status" and "redirects" in r["error"]["message"],
             f"more than fetch_max_redirects redirects is refused (got {st} {r})")
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "gopher://127.0.0.1/"):
        st, r = post(gw, {"url": url})
        fg.check(st == 403 and code(r) == "url_forbidden", f"{url} is refused (got {st} {r})")
    st, r = post(gw, {"url": f"{base}/redirect?file:///etc/passwd"})
    fg.check(st in (403, 422), f"a redirect to file:// is refused (got {st} {r})")

    t0 = time.time()
    st, r = post(gw, {"url": f"{base}/trickle.jpg"})
    took = time.time() - t0
    fg.check(st == 408 and code(r) == "url_timeout",
             f"a URL that trickles is cut: 408 url_timeout (got {st} {r})")
    fg.check(1.2 < took < 6 * fg.SLOW, f"... at fetch_timeout_ms=1500 ({took:.2f} s)")
    st, r = post(gw, {"url": f"{base}/huge.jpg"})
    fg.check(st == 413 and code(r) == "url_too_large",
             f"a 1 GB URL (Content-Length) is 413 url_too_large (got {st} {r})")
    t0 = time.time()
    st, r = post(gw, {"url": f"{base}/huge-chunked.jpg"})
    fg.check(st == 413 and code(r) == "url_too_large" and time.time() - t0 < 5,
             f"a 1 GB chunked URL is cut at max_body_bytes (got {st} {r})")
    st, r = post(gw, {"url": f"{base}/page.html"})
    fg.check(st == 415 and code(r) == "unsupported_media_type",
             f"a URL serving HTML is 415 (got {st} {r})")
    st, r = post(gw, {"url": f"{base}/missing.jpg"})
    fg.check(st == 422 and code(r) == "url_status" and "404" in r["error"]["message"],
             f"a 404 is 422 url_status (got {st} {r})")
    st, r = post(gw, {"urls": [f"{base}/dog.jpg", f"{base}/page.html"]})
    fg.check(st == 415, f"urls: one bad URL answers for the request (got {st})")
    st, r = post(gw, {"url": 42})
    fg.check(st == 400 and code(r) == "bad_json", f"a non-string url is 400 (got {st})")
    st, _, _ = gw.request("GET", "/readyz")
    fg.check(st == 200, "the gateway is still ready")

# the same local server with no allow-list: refused, and by a name allow-listed -> literal IP
with fg.Gateway(settings={"backends": 1, "fetch_allow": "localhost"}, simulate_ms=1) as gw:
    st, r = post(gw, {"url": f"{base}/dog.jpg"})
    fg.check(st == 403 and code(r) == "url_forbidden" and "127.0.0.1" in r["error"]["message"],
             f"without fetch_allow, 127.0.0.1 is 403 url_forbidden (got {st} {r})")
    st, r = post(gw, {"url": f"http://localhost:{port}/dog.jpg"})
    fg.check(st == 200, f"an allow-listed name may reach its loopback address (got {st} {r})")
    st, r = post(gw, {"url": f"http://localhost:{port}/redirect?{base}/dog.jpg"})
    fg.check(st == 403 and code(r) == "url_forbidden",
             f"... but its redirect to 127.0.0.1 is checked again and refused (got {st} {r})")
srv.shutdown()
shutil.rmtree(tmp, ignore_errors=True)
fg.finish()
