#!/usr/bin/python3
"""A small Google token endpoint and Compute Engine API for framegate's gce provider tests,
over HTTPS on 127.0.0.1 (../shared/reference/cloud-apis.md §4):
- POST /token: the service-account JWT (grant_type jwt-bearer) verified by PyJWT (Debian's
  python3-jwt, with python3-cryptography: an RS256 implementation independent of
  framegate's mbedTLS one) against the account's public key: signature, alg RS256, iss, aud
  https://oauth2.googleapis.com/token, the compute scope, iat within 5 minutes, exp - iat
  at most 3600. Answers an access token valid for `expires_in` seconds.
- /compute/v1/projects/P/zones/Z/instances (insert, list with filter=labels.K=V, get,
  delete) and /operations/NAME: every call needs a token this server issued and that has not
  expired (401 otherwise), answers in the API's JSON (insert and delete answer Operations
  that are DONE 0.3 s later).

"Booting" an instance runs its startup-script metadata with FG_ETC, FG_ADDR=127.0.0.1,
FG_LISTEN_HOST=127.0.0.1 and FG_PORT=<a free port>, so a real framegate-backend starts and
joins the gateway; deleting it stops that process.

In-process (GceFake): `throttle = N` answers the next N compute calls 503; `tokens` counts
tokens issued; `refused` counts refused JWTs and tokens; `boot = False` keeps instances from
starting anything."""
import http.server
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

import jwt

AUD = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/compute"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gerror(code, reason, message):
    return code, {"error": {"code": code, "message": message,
                            "errors": [{"message": message, "domain": "global",
                                        "reason": reason}]}}


class GceFake:
    def __init__(self, certfile, keyfile, workdir, project, zone, email, public_pem):
        self.project, self.zone, self.email = project, zone, email
        self.public_pem = public_pem
        self.workdir = workdir
        self.lock = threading.Lock()
        self.issued = {}  # token -> expiry (time)
        self.expires_in = 3599
        self.tokens = 0
        self.refused = 0
        self.throttle = 0
        self.boot = True
        self.instances = {}  # name -> {"obj", "proc", "deleted"}
        self.ops = {}
        self.requests = {}
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def go(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n) if 0 < n < 1 << 20 else b""
                code, obj = fake.handle(self.command, self.path, self.headers, body)
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = go

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        # a client that hangs up mid-answer (a gateway killed on purpose) is no error here
        self.httpd.handle_error = lambda request, address: None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"https://127.0.0.1:{self.port}"

    def token(self, body):
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return 400, {"error": "unsupported_grant_type"}
        try:
            head = jwt.get_unverified_header(form.get("assertion", ""))
            claims = jwt.decode(form.get("assertion", ""), self.public_pem, algorithms=["RS256"],
                                audience=AUD, issuer=self.email, leeway=300)
            if head.get("alg") != "RS256" or SCOPE not in claims.get("scope", "").split() or \
                    claims["exp"] - claims["iat"] > 3600 or abs(claims["iat"] - time.time()) > 300:
                raise jwt.InvalidTokenError("claims")
        except jwt.PyJWTError as e:
            with self.lock:
                self.refused += 1
            return 400, {"error": "invalid_grant", "error_description": f"Invalid JWT: {e}"}
        tok = "ya29." + secrets.token_urlsafe(24)
        with self.lock:
            self.issued[tok] = time.time() + self.expires_in
            self.tokens += 1
        return 200, {"access_token": tok, "expires_in": self.expires_in, "token_type": "Bearer"}

    def handle(self, method, path, headers, body):
        u = urllib.parse.urlsplit(path)
        if method == "POST" and u.path == "/token":
            return self.token(body)
        auth = headers.get("Authorization", "")
        tok = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
        with self.lock:
            ok = self.issued.get(tok, 0) > time.time()
            if not ok:
                self.refused += 1
        if not ok:
            return gerror(401, "authError", "Request had invalid authentication credentials.")
        base = f"/compute/v1/projects/{self.project}/zones/{self.zone}"
        if not u.path.startswith(base + "/"):
            return gerror(404, "notFound", f"{u.path} not found")
        rest = u.path[len(base):]
        with self.lock:
            key = f"{method} {rest.split('/')[1]}"
            self.requests[key] = self.requests.get(key, 0) + 1
            if self.throttle > 0:
                self.throttle -= 1
                return gerror(503, "backendError", "The service is currently unavailable.")
        q = urllib.parse.parse_qs(u.query)
        m = re.fullmatch(r"/operations/([a-z0-9-]+)", rest)
        if m and method == "GET":
            with self.lock:
                op = self.ops.get(m.group(1))
                return (200, dict(op)) if op else gerror(404, "notFound", "operation")
        if rest == "/instances" and method == "POST":
            return self.insert(body)
        if rest == "/instances" and method == "GET":
            return self.list(q.get("filter", [""])[0])
        m = re.fullmatch(r"/instances/([a-z0-9-]+)", rest)
        if m and method == "DELETE":
            return self.delete(m.group(1))
        if m and method == "GET":
            with self.lock:
                i = self.instances.get(m.group(1))
                return (200, i["obj"]) if i and not i["deleted"] else \
                    gerror(404, "notFound", f"The resource '{m.group(1)}' was not found")
        return gerror(400, "badRequest", "unsupported")

    def new_op(self, kind, target):
        name = "operation-" + secrets.token_hex(8)
        op = {"kind": "compute#operation", "name": name, "operationType": kind,
              "targetLink": target, "status": "RUNNING"}
        self.ops[name] = op

        def done():
            with self.lock:
                op["status"] = "DONE"
        threading.Timer(0.3, done).start()
        return dict(op)

    def insert(self, body):
        try:
            vm = json.loads(body)
        except ValueError:
            return gerror(400, "parseError", "not JSON")
        name = vm.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
            return gerror(400, "invalid", f"Invalid value for field 'resource.name': '{name}'")
        items = {i["key"]: i["value"] for i in vm.get("metadata", {}).get("items", [])}
        if "startup-script" not in items or not vm.get("machineType") or not vm.get("disks"):
            return gerror(400, "required", "machineType, disks and a startup-script are required")
        with self.lock:
            if name in self.instances and not self.instances[name]["deleted"]:
                return gerror(409, "alreadyExists", f"The resource '{name}' already exists")
            vm["status"] = "PROVISIONING"
            self.instances[name] = {"obj": vm, "proc": None, "deleted": False,
                                    "script": items["startup-script"]}
            op = self.new_op("insert", name)
        threading.Timer(0.3, self.run, (name,)).start()
        return 200, op

    def run(self, name):
        with self.lock:
            i = self.instances.get(name)
            if i is None or i["deleted"] or not self.boot:
                return
            d = os.path.join(self.workdir, name)
            os.makedirs(d, exist_ok=True)
            script = os.path.join(d, "startup-script.sh")
            with open(script, "w") as f:
                f.write(i["script"])
            env = dict(os.environ, FG_ETC=d, FG_ADDR="127.0.0.1", FG_LISTEN_HOST="127.0.0.1",
                       FG_PORT=str(free_port()))
            log = open(os.path.join(d, "serial.log"), "w")
            i["proc"] = subprocess.Popen(["/bin/sh", script], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            i["obj"]["status"] = "RUNNING"
            i["obj"]["networkInterfaces"][0]["networkIP"] = "127.0.0.1"

    def list(self, flt):
        want = dict(re.findall(r"labels\.([a-z0-9_-]+)\s*=\s*([a-z0-9_-]+)", flt))
        with self.lock:
            items = [i["obj"] for i in self.instances.values() if not i["deleted"] and
                     all(i["obj"].get("labels", {}).get(k) == v for k, v in want.items())]
        out = {"kind": "compute#instanceList"}
        if items:  # the API leaves "items" out of an empty list
            out["items"] = items
        return 200, out

    def delete(self, name):
        with self.lock:
            i = self.instances.get(name)
            if i is None or i["deleted"]:
                return gerror(404, "notFound", f"The resource '{name}' was not found")
            i["deleted"] = True
            proc = i["proc"]
            op = self.new_op("delete", name)
        if proc is not None and proc.poll() is None:
            def stop():
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(5)
                except (OSError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    proc.wait()
            threading.Thread(target=stop, daemon=True).start()
        return 200, op

    def alive(self):
        with self.lock:
            return [n for n, i in self.instances.items() if not i["deleted"]]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for i in self.instances.values():
                if i["proc"] is not None and i["proc"].poll() is None:
                    try:
                        os.killpg(i["proc"].pid, signal.SIGKILL)
                    except OSError:
                        pass
                    i["proc"].wait()


def service_account_key(path, email, token_uri):
    """Writes a service-account key file for a fresh RSA key; returns its public key PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption()).decode()
    with open(path, "w") as f:
        json.dump({"type": "service_account", "project_id": "p",
                   "private_key_id": secrets.token_hex(20), "private_key": pem,
                   "client_email": email, "token_uri": token_uri}, f)
    os.chmod(path, 0o600)
    return k.public_key().public_bytes(serialization.Encoding.PEM,
                                       serialization.PublicFormat.SubjectPublicKeyInfo).decode()

