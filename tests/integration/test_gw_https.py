#!/usr/bin/env python3
"""HTTPS on the gateway (mbedTLS on the loop): curl and Python's ssl with the test CA get
answers and with another CA fail, keep-alive and pipelining work as over plain HTTP, sessions
resume, a stalled handshake (a partial record, a whole ClientHello then silence, nothing at
all) is cut at header_timeout_ms, client certificates when https_client_ca is set, tokens
(bound to a camera) over TLS, 1000 keep-alive TLS connections at once, and SIGHUP with a new
certificate under load loses no request while new connections get the new certificate."""
# ctest-timeout: 150
import os
import resource
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import fg

tmp = tempfile.mkdtemp(prefix="fghttps-")
certs = os.path.join(tmp, "certs")
other = os.path.join(tmp, "other")


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


CERTS_SH = os.path.join(fg.SRC, "scripts", "certs.sh")
sh(CERTS_SH, "init", certs, "--ip", "127.0.0.1", "--dns", "localhost")
sh(CERTS_SH, "init", other, "--ip", "127.0.0.1")  # another CA: its clients trust nothing of ours
sh(CERTS_SH, "issue", certs, "client1")            # a client certificate from our CA
sh(CERTS_SH, "issue", other, "stranger")           # ... and one from the other CA
CA = os.path.join(certs, "ca.crt")
live_crt, live_key = os.path.join(tmp, "live.crt"), os.path.join(tmp, "live.key")
shutil.copy(os.path.join(certs, "gateway.crt"), live_crt)
shutil.copy(os.path.join(certs, "gateway.key"), live_key)

# 1000 connections need 1000 descriptors here and in the gateway (which inherits the limit)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 4096 and hard >= 4096:
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    soft = 4096


def ctx(ca=CA, cert=None):
    c = ssl.create_default_context(cafile=ca)
    if cert:
        c.load_cert_chain(os.path.join(certs if "client1" in cert else other, cert + ".crt"),
                          os.path.join(certs if "client1" in cert else other, cert + ".key"))
    return c


DEFAULT = ctx()


def tls_connect(port, context=None, session=None, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout * fg.SLOW)
    return (context or DEFAULT).wrap_socket(s, server_hostname="127.0.0.1", session=session)


def read_responses(s, n):
    """Reads n HTTP responses (Content-Length bodies) from s; returns [(status, body)]."""
    buf, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return out
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = s.recv(65536)
            if not chunk:
                return out
            rest += chunk
        out.append((int(head.split(b" ")[1]), rest[:length]))
        buf = rest[length:]
    return out


def get(path, token=None):
    h = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{h}\r\n".encode()


plain = fg.free_port()
tokens = os.path.join(tmp, "tokens")
with open(tokens, "w") as f:
    f.write("viewer-token-001 viewer\ncamera-token-01 camera gate1\n")
settings = {"backends": 1, "https_cert": live_crt, "https_key": live_key,
            "listen_plain": f"127.0.0.1:{plain}", "header_timeout_ms": 1000,
            "max_connections": 1100, "tokens_file": tokens}
try:
    gw = fg.Gateway(settings=settings, simulate_ms=5)
    https = gw.port
    gw.port = plain  # the harness's readiness checks go to the plain listener
    with gw:
        # ---- curl ----
        r = subprocess.run(["curl", "-sS", "--cacert", CA, f"https://127.0.0.1:{https}/healthz",
                            f"https://127.0.0.1:{https}/readyz"], capture_output=True, text=True)
        fg.check(r.returncode == 0 and r.stdout.startswith('{"status":"ok"}{"ready":true'),
                 f"curl with the test CA: two answers on one connection ({r.stderr.strip()})")
        r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(other, "ca.crt"),
                            f"https://127.0.0.1:{https}/healthz"], capture_output=True, text=True)
        fg.check(r.returncode != 0 and r.stdout == "", f"curl with another CA fails "
                 f"(exit {r.returncode})")
        r = subprocess.run(["curl", "-sS", "--cacert", CA, "--tls-max", "1.1",
                            f"https://127.0.0.1:{https}/healthz"], capture_output=True, text=True)
        fg.check(r.returncode != 0, "TLS 1.1 is refused")
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", CA,
                            "-H", "Content-Type: image/jpeg",
                            "-H", "Authorization: Bearer camera-token-01",
                            "--data-binary", "@" + os.path.join(fg.DATA, "dog.jpg"),
                            f"https://127.0.0.1:{https}/v1/detect?camera=gate1"],
                           capture_output=True, text=True)
        fg.check(r.stdout == "200", f"curl posts a frame over HTTPS ({r.stdout})")

        # ---- Python ssl: keep-alive, pipelining, resumption, tokens ----
        s = tls_connect(https)
        fg.check(s.version() == "TLSv1.2" and ("GCM" in s.cipher()[0] or "CHACHA" in s.cipher()[0]),
                 f"TLS 1.2 with an AEAD suite ({s.version()}, {s.cipher()[0]})")
        s.sendall(get("/healthz") + get("/v1/cameras") + get("/v1/cameras", "viewer-token-001"))
        rs = read_responses(s, 3)
        fg.check([st for st, _ in rs] == [200, 401, 200], f"three pipelined requests, answered in "
                 f"order, tokens apply ({[st for st, _ in rs]})")
        for _ in range(20):
            s.sendall(get("/healthz"))
        fg.check(len(read_responses(s, 20)) == 20, "20 more requests on the same connection")
        sess = s.session
        s.close()
        s = tls_connect(https, session=sess)
        fg.check(s.session_reused, "the session resumes (ticket)")
        s.close()
        try:
            tls_connect(https, ctx(ca=os.path.join(other, "ca.crt"))).close()
            refused, why = False, "it connected"
        except ssl.SSLCertVerificationError as e:
            refused, why = True, e.verify_message
        except (OSError, ssl.SSLError) as e:
            refused, why = False, "not a verification error: " + repr(e)
        fg.check(refused, f"Python's ssl with another CA fails verification ({why})")

        # ---- a stalled handshake is cut ----
        t0 = time.time()
        raw = socket.create_connection(("127.0.0.1", https), timeout=10)
        raw.sendall(b"\x16\x03\x01\x00\x80")  # a ClientHello's record header, then nothing
        try:
            got = raw.recv(100)
        except OSError:
            got = b""
        waited = time.time() - t0
        raw.close()
        fg.check(got == b"" and 0.8 < waited < 3 * fg.SLOW,
                 f"a stalled handshake is cut at header_timeout_ms ({waited:.2f} s)")

        def until_closed(sock, limit):
            """Reads until the peer closes; the bytes and the seconds it took (None: open)."""
            t0, data = time.time(), b""
            sock.settimeout(limit)
            try:
                while True:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return data, time.time() - t0
                    data += chunk
            except socket.timeout:
                return data, None
            except OSError:
                return data, time.time() - t0
        # a whole ClientHello, the server's answer read, then silence: cut mid-handshake
        inc, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = DEFAULT.wrap_bio(inc, outb, server_hostname="127.0.0.1")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        raw = socket.create_connection(("127.0.0.1", https), timeout=10)
        raw.sendall(outb.read())
        t0 = time.time()
        got, waited = until_closed(raw, 6 * fg.SLOW)
        waited = None if waited is None else time.time() - t0
        raw.close()
        fg.check(got[:1] == b"\x16" and waited is not None and waited < 3 * fg.SLOW,
                 f"a client that stalls after its ClientHello (the server's flight sent: "
                 f"{len(got)} bytes) is cut at header_timeout_ms ({waited} s)")
        # a connection that never says anything
        raw = socket.create_connection(("127.0.0.1", https), timeout=10)
        got, waited = until_closed(raw, 6 * fg.SLOW)
        raw.close()
        fg.check(got == b"" and waited is not None and 0.8 < waited < 3 * fg.SLOW,
                 f"a TLS connection that sends nothing is cut at header_timeout_ms ({waited} s)")
        raw = socket.create_connection(("127.0.0.1", https), timeout=10)
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
        try:
            got = raw.recv(100)
        except OSError:
            got = b""
        raw.close()
        fg.check(not got.startswith(b"HTTP/"), "plain HTTP on the HTTPS port gets no HTTP answer")

        # ---- 1000 keep-alive TLS connections at once ----
        n = 1000 if soft >= 2200 else 300
        conns, t0 = [], time.time()
        try:
            for _ in range(n):
                conns.append(tls_connect(https, session=sess))
            for c in conns:
                c.sendall(get("/healthz"))
            ok = sum(1 for c in conns if read_responses(c, 1) == [(200, b'{"status":"ok"}')])
            for c in conns:  # and a second request on each: they were kept alive
                c.sendall(get("/healthz"))
            ok2 = sum(1 for c in conns if len(read_responses(c, 1)) == 1)
        finally:
            for c in conns:
                c.close()
        fg.check(ok == n and ok2 == n, f"{n} TLS connections open at once, each answered twice "
                 f"({ok}, {ok2}; {time.time() - t0:.1f} s)")

        # ---- SIGHUP with a new certificate under load ----
        sh(CERTS_SH, "issue", certs, "gateway2", "--ip", "127.0.0.1", "--dns", "localhost")
        old_der = tls_connect(https).getpeercert(binary_form=True)
        stop = threading.Event()
        results = {"ok": 0, "bad": [], "after": 0}
        hup = [0.0]

        def load(fresh):
            while not stop.is_set():
                try:
                    s = tls_connect(https)
                    for _ in range(1 if fresh else 50):
                        s.sendall(get("/healthz"))
                        r = read_responses(s, 1)
                        if r == [(200, b'{"status":"ok"}')]:
                            results["ok"] += 1
                            results["after"] += hup[0] > 0
                        else:
                            results["bad"].append(r)
                        if stop.is_set():
                            break
                    s.close()
                except (OSError, ssl.SSLError) as e:
                    results["bad"].append(repr(e))
        threads = [threading.Thread(target=load, args=(i % 2 == 0,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1)
        # the files are replaced as a deploy would (rename), then SIGHUP
        shutil.copy(os.path.join(certs, "gateway2.crt"), live_crt + ".new")
        shutil.copy(os.path.join(certs, "gateway2.key"), live_key + ".new")
        os.replace(live_key + ".new", live_key)
        os.replace(live_crt + ".new", live_crt)
        hup[0] = time.time()
        gw.proc.send_signal(1)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        new_der = tls_connect(https).getpeercert(binary_form=True)
        fg.check(results["ok"] > 30 and results["after"] > 10 and not results["bad"],
                 f"SIGHUP under load: {results['ok']} answers ({results['after']} after it), "
                 f"none lost ({results['bad'][:3]})")
        fg.check(new_der != old_der and "https_reloaded" in gw.log(),
                 "new connections get the new certificate")
        fg.check(gw.proc.poll() is None, "the gateway still runs")
        code = gw.stop()
        fg.check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")

    # ---- client certificates ----
    settings.update({"https_client_ca": CA, "tokens_file": ""})
    gw = fg.Gateway(settings=settings, simulate_ms=5)
    https = gw.port
    gw.port = plain
    with gw:
        s = tls_connect(https, ctx(cert="client1"))
        s.sendall(get("/healthz"))
        fg.check(read_responses(s, 1) == [(200, b'{"status":"ok"}')],
                 "https_client_ca: a client certificate from the CA is accepted")
        s.close()
        for name, cx in (("no certificate", ctx()), ("another CA's", ctx(cert="stranger"))):
            try:
                s = tls_connect(https, cx)
                s.sendall(get("/healthz"))
                r = read_responses(s, 1)
                s.close()
            except (OSError, ssl.SSLError):
                r = []
            fg.check(r == [], f"https_client_ca: a client with {name} gets no answer")
        code = gw.stop()
        fg.check(code == 0, f"the gateway exits 0 on SIGTERM ({code})")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
fg.finish()
