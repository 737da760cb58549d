#!/usr/bin/python3
"""A small S3 server for framegate's storage tests: PUT/GET/HEAD/DELETE object and
ListObjectsV2 on path-style URLs, every request's SigV4 signature checked.

Why this and not @20minutes/s3rver 4.0.4 (the server the issue names): s3rver 4.0.4 declares
node >= 20 and a fresh Debian 12 gets nodejs 18 from scripts/setup.sh; the older s3rver 3.7.1
that runs on node 18 does not check signatures at all. This fake runs on Debian's
/usr/bin/python3 with nothing but the standard library and Debian's python3-botocore, and the
signature it expects is computed by botocore's own S3SigV4Auth (canonical request, string to
sign, signature), an implementation independent of framegate's sigv4.c. It is stricter than
s3rver: it also checks x-amz-content-sha256 against the body.

Checks, in order (each failure is S3's error XML): Authorization present and well formed
(403 AccessDenied), known access key (403 InvalidAccessKeyId), x-amz-content-sha256 present
(400 InvalidRequest), x-amz-date within 15 minutes of now (403 RequestTimeTooSkewed), the body's
SHA-256 (400 XAmzContentSHA256Mismatch), the signature (403 SignatureDoesNotMatch).

    s3fake.py --port P --dir D [--bucket B ...] [--access-key K --secret-key S]

Objects live under D/<bucket>/ (one file per key, the key hex-encoded: survives a restart).
Prints "listening 127.0.0.1:P" once it accepts connections. Loopback only."""
import argparse
import datetime
import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ARGS = None
LOCK = threading.Lock()
STATS = {"ok": 0, "denied": 0}


class ClientGone(Exception):
    """The client closed the connection before its body's Content-Length bytes arrived (a
    gateway SIGKILLed mid-PUT): nothing to answer, and not a request refused."""


def error_xml(code, message):
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: libcurl reuses its connections

    def log_message(self, fmt, *args):
        if ARGS.verbose:
            sys.stderr.write("s3fake: " + (fmt % args) + "\n")

    def reply(self, status, body=b"", ctype="application/xml", extra=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def fail(self, status, code, message):
        with LOCK:
            STATS["denied"] += 1
        sys.stderr.write(f"s3fake: {self.command} {self.path} -> {status} {code}: {message}\n")
        self.reply(status, error_xml(code, message))
        return False

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 256 << 20:
            raise ValueError("body too large")
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise ClientGone(f"{len(data)} of {n} body bytes")
        return data

    def verify(self, body):
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return self.fail(403, "AccessDenied", "no SigV4 Authorization header")
        fields = {}
        for part in auth[len("AWS4-HMAC-SHA256 "):].split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        try:
            ak, date, region, service, term = fields["Credential"].split("/")
            signed = fields["SignedHeaders"].split(";")
            given = fields["Signature"]
        except (KeyError, ValueError):
            return self.fail(403, "AccessDenied", "malformed Authorization header")
        if ak != ARGS.access_key:
            return self.fail(403, "InvalidAccessKeyId", f"unknown access key {ak}")
        content_sha = self.headers.get("x-amz-content-sha256")
        if content_sha is None:
            return self.fail(400, "InvalidRequest", "missing x-amz-content-sha256")
        amz_date = self.headers.get("x-amz-date") or ""
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return self.fail(403, "AccessDenied", "bad x-amz-date")
        if abs((datetime.datetime.utcnow() - t).total_seconds()) > 900:
            return self.fail(403, "RequestTimeTooSkewed", "x-amz-date is 15 minutes off")
        if date != amz_date[:8] or term != "aws4_request" or "host" not in signed:
            return self.fail(403, "AccessDenied", "credential scope does not match")
        if content_sha != "UNSIGNED-PAYLOAD" and content_sha != hashlib.sha256(body).hexdigest():
            return self.fail(400, "XAmzContentSHA256Mismatch", "body does not match its hash")
        # botocore's signer over exactly the headers the client says it signed
        headers = {}
        for name in signed:
            v = self.headers.get(name)
            if v is None:
                return self.fail(403, "AccessDenied", f"signed header {name} not sent")
            headers[name] = v
        req = AWSRequest(method=self.command, url="http://" + self.headers["Host"] + self.path,
                         headers=headers, data=body)
        req.context["timestamp"] = amz_date
        signer = S3SigV4Auth(Credentials(ak, ARGS.secret_key), service, region)
        creq = signer.canonical_request(req)
        expected = signer.signature(signer.string_to_sign(req, creq), req)
        if expected != given:
            if ARGS.verbose:
                sys.stderr.write("s3fake: expected canonical request:\n" + creq + "\n")
            return self.fail(403, "SignatureDoesNotMatch",
                             "the signature does not match the request")
        with LOCK:
            STATS["ok"] += 1
        return True

    def split(self):
        u = urllib.parse.urlsplit(self.path)
        parts = u.path.lstrip("/").split("/", 1)
        bucket = urllib.parse.unquote(parts[0])
        key = urllib.parse.unquote(parts[1]) if len(parts) > 1 else ""
        return bucket, key, urllib.parse.parse_qs(u.query, keep_blank_values=True)

    def bucket_dir(self, bucket):
        if bucket not in ARGS.bucket:
            self.reply(404, error_xml("NoSuchBucket", bucket))
            return None
        return os.path.join(ARGS.dir, bucket)

    def handle_any(self):
        try:
            body = self.read_body()
        except ValueError:
            return self.reply(400, error_xml("EntityTooLarge", "too large"))
        except ClientGone as e:
            sys.stderr.write(f"s3fake: {self.command} {self.path}: the client went away ({e})\n")
            self.close_connection = True
            return
        if not self.verify(body):
            return
        bucket, key, query = self.split()
        d = self.bucket_dir(bucket)
        if d is None:
            return
        path = os.path.join(d, key.encode().hex()) if key else None
        if self.command == "PUT" and key:
            tmp = path + ".tmp-%d" % threading.get_ident()
            with open(tmp, "wb") as f:
                f.write(body)
            os.rename(tmp, path)
            return self.reply(200, b"", extra={"ETag": '"%s"' % hashlib.md5(body).hexdigest()})
        if self.command in ("GET", "HEAD") and key:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                return self.reply(404, error_xml("NoSuchKey", key))
            return self.reply(200, data, ctype="application/octet-stream")
        if self.command == "DELETE" and key:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return self.reply(204)
        if self.command == "GET" and not key and query.get("list-type") == ["2"]:
            return self.list_objects(bucket, d, query)
        return self.reply(400, error_xml("InvalidRequest", "not supported by s3fake"))

    def list_objects(self, bucket, d, query):
        prefix = query.get("prefix", [""])[0]
        after = query.get("start-after", [""])[0]
        maxk = min(int(query.get("max-keys", ["1000"])[0]), 1000)
        keys = sorted(bytes.fromhex(n).decode() for n in os.listdir(d) if ".tmp-" not in n)
        keys = [k for k in keys if k.startswith(prefix) and k > after]
        out = keys[:maxk]
        xml = ['<?xml version="1.0" encoding="UTF-8"?>',
               '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">',
               f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
               f"<KeyCount>{len(out)}</KeyCount><MaxKeys>{maxk}</MaxKeys>",
               f"<IsTruncated>{'true' if len(keys) > maxk else 'false'}</IsTruncated>"]
        for k in out:
            size = os.path.getsize(os.path.join(d, k.encode().hex()))
            xml.append(f"<Contents><Key>{escape(k)}</Key><Size>{size}</Size></Contents>")
        xml.append("</ListBucketResult>")
        self.reply(200, "".join(xml).encode())

    do_PUT = do_GET = do_HEAD = do_DELETE = handle_any


class S3Fake:
    """For tests: this server as a child process on a fixed port (restartable on the same
    port and data directory, to simulate an outage)."""

    def __init__(self, root, port=None, bucket="test-bucket"):
        self.root, self.bucket = root, bucket
        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        self.port = port
        self.proc = None
        self.logpath = os.path.join(root, "s3fake.log")

    def start(self):
        log = open(self.logpath, "a")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.abspath(__file__), "--port", str(self.port), "--dir",
             self.root, "--bucket", self.bucket], stdout=log, stderr=log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("s3fake exited:\n" + self.log())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("s3fake did not start:\n" + self.log())

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self):
        with open(self.logpath) as f:
            return f.read()

    def keys(self):
        d = os.path.join(self.root, self.bucket)
        return {bytes.fromhex(n).decode() for n in os.listdir(d) if ".tmp-" not in n}

    def read(self, key):
        with open(os.path.join(self.root, self.bucket, key.encode().hex()), "rb") as f:
            return f.read()


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--access-key", default="S3RVER")
    ap.add_argument("--secret-key", default="S3RVER")
    ap.add_argument("--verbose", action="store_true")
    ARGS = ap.parse_args()
    ARGS.bucket = ARGS.bucket or ["test-bucket"]
    for b in ARGS.bucket:
        os.makedirs(os.path.join(ARGS.dir, b), exist_ok=True)
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    srv.daemon_threads = True
    print(f"listening 127.0.0.1:{ARGS.port}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
