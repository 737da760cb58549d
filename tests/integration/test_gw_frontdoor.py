#!/usr/bin/env python3
"""The front door over the real gateway: every role on every kind of route (a table), the
token in a header or in ?token=, 401 vs 403, a token file changed without a restart, /readyz
saying when everything is open, rate limits (429 + Retry-After, counted per token, a limited
client does not slow another), and the per-address connection cap."""
# ctest-timeout: 120
import json
import os
import socket
import threading
import time

import fg

TOK = {"camera": "cam-token-door1", "camera2": "cam-token-door2", "viewer": "view-token-0001",
       "admin": "admin-token-0001"}
TOKENS = (f"{TOK['camera']} camera door1\n{TOK['camera2']} camera door2\n"
          f"{TOK['viewer']} viewer\n# the admin\n{TOK['admin']} admin ops\n")


def req(gw, method, path, token=None, how="header", body=None, headers=None):
    h = dict(headers or {})
    if token is not None and how == "header":
        h["Authorization"] = f"Bearer {token}"
    elif token is not None:
        path += ("&" if "?" in path else "?") + "token=" + token
    if body is not None:
        h.setdefault("Content-Type", "image/jpeg")
    return gw.request(method, path, body=body, headers=h, timeout=30)


dog = fg.image("dog.jpg")
# (method, path, who may) -- "public", or the roles allowed besides admin
ROUTES = [
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    ("POST", "/v1/detect", {"camera", "camera2"}),
    ("POST", "/v1/models/app/detect", {"camera", "camera2"}),
    ("GET", "/v1/backends", set()),
    ("GET", "/v1/models", set()),
    ("GET", "/metrics", set()),
    ("DELETE", "/v1/jobs/nosuchjob", set()),
    ("GET", "/v1/cameras", {"viewer"}),
    ("GET", "/v1/cameras/door1/latest.jpg", {"viewer", "camera"}),  # its own camera
    ("GET", "/v1/cameras/door2/latest.jpg", {"viewer", "camera2"}),
    ("GET", "/v1/jobs", {"viewer", "camera", "camera2"}),
    ("GET", "/", {"viewer"}),
]

rundir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fgfd-{os.getpid()}")
os.makedirs(rundir, exist_ok=True)
tokens_path = os.path.join(rundir, "tokens")
with open(tokens_path, "w") as f:
    f.write(TOKENS)

try:
    # ---- no tokens: open, and said so ----
    with fg.Gateway(settings={"backends": 1, "max_cameras": 4}, simulate_ms=5) as gw:
        st, _, body = gw.request("GET", "/readyz")
        fg.check(st == 200 and "open" in json.loads(body)["auth"], "/readyz says the door is open")
        st, _, _ = gw.request("GET", "/v1/backends")
        fg.check(st == 200, "no tokens_file: admin routes answer without a token")
        fg.check("NO TOKENS" in gw.log(), "the log says loudly that every route is open")

    settings = {"backends": 1, "max_cameras": 4, "tokens_file": tokens_path}
    with fg.Gateway(settings=settings, simulate_ms=5) as gw:
        st, _, body = gw.request("GET", "/readyz")
        fg.check(st == 200 and json.loads(body)["auth"] == "tokens", "/readyz: auth = tokens")
        # ---- the table: every role on every route ----
        bad = []
        for method, path, allowed in ROUTES:
            body = dog if method == "POST" else None
            for who in ["none", "wrong", "camera", "camera2", "viewer", "admin"]:
                token = None if who == "none" else "not-a-token-xyz" if who == "wrong" else TOK[who]
                st, hdrs, data = req(gw, method, path, token, body=body)
                if allowed == "public" or who == "admin" or who in allowed:
                    ok = st not in (401, 403)
                    want = "allowed"
                elif who in ("none", "wrong"):
                    ok = st == 401 and "bearer" in hdrs.get("www-authenticate", "").lower() and \
                        json.loads(data)["error"]["code"] == "unauthorized"
                    want = "401"
                else:
                    ok = st == 403 and json.loads(data)["error"]["code"] == "forbidden"
                    want = "403"
                if not ok:
                    bad.append(f"{who} {method} {path}: {st}, want {want}")
        fg.check(not bad, f"each role allowed/refused on each route ({len(ROUTES)} routes x 6)"
                 + ("".join("\n    " + b for b in bad)))
        # the detect answer is real
        st, _, data = req(gw, "POST", "/v1/detect", TOK["camera"], body=dog)
        fg.check(st == 200 and "detections" in json.loads(data), "a camera token posts a frame")
        # ?token= for clients that cannot set headers
        st, _, _ = req(gw, "GET", "/v1/cameras", TOK["viewer"], how="query")
        fg.check(st == 200, "?token= works")
        st, _, _ = req(gw, "GET", "/v1/cameras?x=1", TOK["viewer"].replace("-", "%2D"), how="query")
        fg.check(st == 200, "?token= is percent-decoded, after other parameters")
        st, _, _ = gw.request("GET", "/v1/cameras", headers={"Authorization": "Basic " + TOK["viewer"]})
        fg.check(st == 401, "a token not given as Bearer is no token")
        c = gw.conn(10)
        c.putrequest("GET", "/v1/cameras?token=" + TOK["viewer"])
        c.putheader("Authorization", "Bearer " + TOK["viewer"])
        c.putheader("Authorization", "Bearer " + TOK["admin"])
        c.endheaders()
        r = c.getresponse()
        r.read()
        c.close()
        fg.check(r.status == 401, "two Authorization headers are no token (not a guess)")
        st, _, data = req(gw, "GET", "/metrics", TOK["admin"])
        fg.check(fg.metric_value(data.decode(), "framegate_auth_refused_total", {"code": "403"}) > 0
                 and fg.metric_value(data.decode(), "framegate_auth_refused_total", {"code": "401"}) > 0,
                 "refusals are counted by code")

        # ---- a changed file takes effect without a restart ----
        with open(tokens_path + ".new", "w") as f:
            f.write(f"{TOK['viewer']} admin\nnew-token-12345 viewer\n")
        os.replace(tokens_path + ".new", tokens_path)
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, _ = req(gw, "GET", "/v1/backends", TOK["viewer"])
            if st == 200:
                break
            time.sleep(0.2)
        fg.check(st == 200, "a token file change applies without a restart (viewer became admin)")
        st, _, _ = req(gw, "GET", "/v1/cameras", "new-token-12345")
        fg.check(st == 200, "... a new token works")
        st, _, _ = req(gw, "POST", "/v1/detect", TOK["camera"], body=dog)
        fg.check(st == 401, "... a removed token is refused")
        with open(tokens_path, "w") as f:
            f.write("this line is broken\n")
        time.sleep(1.5)
        st, _, _ = req(gw, "GET", "/v1/cameras", "new-token-12345")
        fg.check(st == 200 and "tokens_reload" in gw.log(),
                 "a broken file is logged and the previous tokens stay")
        with open(tokens_path, "w") as f:
            f.write(TOKENS)
        gw.proc.send_signal(1)  # SIGHUP: re-read now
        time.sleep(0.5)
        st, _, _ = req(gw, "POST", "/v1/detect", TOK["camera"], body=dog)
        fg.check(st == 200, "SIGHUP re-reads the file")
        fg.check(gw.proc.poll() is None, "the gateway survives SIGHUP")

    # ---- rate limits and the connection cap ----
    settings = {"backends": 1, "tokens_file": tokens_path, "rate_limit": "5/s burst 5",
                "rate_limit_address": "400/s burst 400", "max_connections_per_address": 20}
    with fg.Gateway(settings=settings, simulate_ms=5) as gw:
        sts, retry = [], None
        c = gw.conn(10)
        for _ in range(12):
            c.request("GET", "/v1/jobs", headers={"Authorization": "Bearer " + TOK["camera"]})
            r = c.getresponse()
            r.read()
            sts.append(r.status)
            if r.status == 429:
                retry = r.getheader("Retry-After")
        c.close()
        fg.check(sts[:5] == [200] * 5 and sts.count(429) >= 6,
                 f"over its rate a token gets 429 ({sts})")
        fg.check(retry is not None and int(retry) >= 1, f"... with Retry-After ({retry})")
        st, _, _ = req(gw, "GET", "/v1/jobs", TOK["viewer"])
        fg.check(st == 200, "another token is not limited by it")

        # a limited client never slows another: the viewer's p99 alone, then beside a flood
        def p99(token, n=60):
            lat = []
            c = gw.conn(10)
            for i in range(n):
                t0 = time.perf_counter()
                c.request("GET", "/v1/jobs", headers={"Authorization": "Bearer " + token})
                c.getresponse().read()
                lat.append(time.perf_counter() - t0)
                time.sleep(0.2 - (time.perf_counter() - t0) if lat[-1] < 0.2 else 0)
            c.close()
            lat.sort()
            return lat[int(len(lat) * 0.99) - 1]
        with open(tokens_path, "a") as f:
            f.write("flood-token-0001 viewer flood\nquiet-token-0001 viewer quiet\n")
        gw.proc.send_signal(1)
        time.sleep(0.3)
        base = p99("quiet-token-0001", n=25)
        stop = threading.Event()
        flooded = [0]

        def flood():
            c = gw.conn(10)
            while not stop.is_set():
                c.request("GET", "/v1/jobs", headers={"Authorization": "Bearer flood-token-0001"})
                r = c.getresponse()
                r.read()
                flooded[0] += r.status == 429
                time.sleep(0.005)  # under the address's rate; far over the token's
            c.close()
        th = threading.Thread(target=flood)
        th.start()
        time.sleep(0.3)
        loaded = p99("quiet-token-0001", n=25)
        stop.set()
        th.join()
        fg.check(flooded[0] > 50, f"the flooding token was refused ({flooded[0]} x 429)")
        fg.check(loaded <= base + 0.005, f"another client's p99 stays within its unloaded p99 "
                 f"+ 5 ms ({loaded * 1e3:.1f} vs {base * 1e3:.1f} ms)")
        st, _, data = req(gw, "GET", "/metrics", TOK["admin"])
        text = data.decode()
        fg.check(fg.metric_value(text, "framegate_rate_limited_total",
                                 {"by": "token", "token": "flood"}) >= flooded[0]
                 and fg.metric_value(text, "framegate_rate_limited_total",
                                     {"by": "token", "token": "door1"}) >= 6,
                 "429s are counted per token name")

        # the address's own bucket: no token at all, many requests -> 429 before 401
        c = gw.conn(10)
        seen = set()
        for _ in range(500):
            c.request("GET", "/v1/backends")
            r = c.getresponse()
            r.read()
            seen.add(r.status)
            if r.status == 429:
                break
        c.close()
        fg.check(seen == {401, 429}, f"an address over its rate gets 429 ({sorted(seen)})")
        time.sleep(1.2)
        st, _, _ = gw.request("GET", "/healthz")
        fg.check(st == 200, "public routes are never limited")

        # per-address connection cap: of 25 connections, 20 are served, 5 closed at once
        time.sleep(0.5)  # the earlier connections' closes are seen
        socks = [socket.create_connection(("127.0.0.1", gw.port), timeout=5) for _ in range(25)]
        served = 0
        for s in socks:
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                served += s.recv(100).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
        fg.check(served == 20, f"max_connections_per_address: 20 of 25 served ({served})")
        for s in socks:
            s.close()
        time.sleep(0.3)
        st, _, _ = gw.request("GET", "/healthz")
        fg.check(st == 200, "after they close, the address connects again")
        code = gw.stop()
        fg.check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
finally:
    for p in (tokens_path, tokens_path + ".new"):
        if os.path.exists(p):
            os.unlink(p)
    os.rmdir(rundir)
fg.finish()
