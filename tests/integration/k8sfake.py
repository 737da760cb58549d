#!/usr/bin/python3
"""A small Kubernetes API server (and kubelet) for framegate's kubernetes provider tests:
POST/GET/DELETE /api/v1/namespaces/NS/pods[/NAME] and the list with a labelSelector, over
HTTPS on 127.0.0.1, every request's bearer token checked (401 Status otherwise), answers and
errors in the API's JSON shapes (../shared/reference/cloud-apis.md §3).

"Running" a pod starts its first container's args with `backend` (the image is not pulled),
$(VAR) references expanded from the container's env as the kubelet does, POD_IP = 127.0.0.1
and, because every pod here shares the loopback address instead of having its own, FG_PORT =
a free port. Deleting a pod stops that process (SIGTERM, SIGKILL after 5 s).

Used in-process (K8sFake): `token` is the one accepted (a test may rotate it); `throttle = N`
answers the next N requests 429; `refused` counts bad tokens; `pods` holds every pod."""
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


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(code, reason, message):
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}


class K8sFake:
    def __init__(self, certfile, keyfile, workdir, backend, token, boot_delay=0.2):
        self.workdir, self.backend, self.token = workdir, backend, token
        self.boot_delay = boot_delay
        self.lock = threading.Lock()
        self.pods = {}  # (ns, name) -> {"obj": pod, "proc": Popen|None, "deleted": bool}
        self.throttle = 0
        self.refused = 0
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

    def handle(self, method, path, headers, body):
        if headers.get("Authorization") != f"Bearer {self.token}":
            with self.lock:
                self.refused += 1
            return status(401, "Unauthorized", "Unauthorized")
        u = urllib.parse.urlsplit(path)
        m = re.fullmatch(r"/api/v1/namespaces/([a-z0-9-]+)/pods(?:/([a-z0-9.-]+))?", u.path)
        if m is None:
            return status(404, "NotFound", f"the server could not find {u.path}")
        ns, name = m.group(1), m.group(2)
        with self.lock:
            key = f"{method} {'pod' if name else 'pods'}"
            self.requests[key] = self.requests.get(key, 0) + 1
            if self.throttle > 0:
                self.throttle -= 1
                return status(429, "TooManyRequests", "the server has received too many requests")
        if method == "POST" and name is None:
            return self.create(ns, body)
        if method == "GET" and name is None:
            return self.list(ns, urllib.parse.parse_qs(u.query).get("labelSelector", [""])[0])
        if method == "DELETE" and name is not None:
            return self.delete(ns, name)
        if method == "GET":
            with self.lock:
                p = self.pods.get((ns, name))
                return (200, p["obj"]) if p and not p["deleted"] else \
                    status(404, "NotFound", f'pods "{name}" not found')
        return status(405, "MethodNotAllowed", method)

    def create(self, ns, body):
        try:
            pod = json.loads(body)
        except ValueError:
            return status(400, "BadRequest", "not JSON")
        meta = pod.get("metadata", {})
        name = meta.get("name", "")
        if pod.get("kind") != "Pod" or not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
                                                         name):
            return status(422, "Invalid", f"Pod \"{name}\" is invalid")
        ctrs = pod.get("spec", {}).get("containers") or []
        if not ctrs or not ctrs[0].get("image"):
            return status(422, "Invalid", "spec.containers[0].image: Required value")
        with self.lock:
            if (ns, name) in self.pods and not self.pods[(ns, name)]["deleted"]:
                return status(409, "AlreadyExists", f'pods "{name}" already exists')
            meta["namespace"] = ns
            meta["uid"] = secrets.token_hex(16)
            pod["status"] = {"phase": "Pending"}
            self.pods[(ns, name)] = {"obj": pod, "proc": None, "deleted": False}
        threading.Timer(self.boot_delay, self.run, (ns, name)).start()
        return 201, pod

    def run(self, ns, name):
        with self.lock:
            p = self.pods.get((ns, name))
            if p is None or p["deleted"]:
                return
            c = p["obj"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
            env["POD_IP"] = "127.0.0.1"
            env["FG_PORT"] = str(free_port())
            args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a)
                    for a in c.get("args", [])]
            d = os.path.join(self.workdir, name)
            os.makedirs(d, exist_ok=True)
            log = open(os.path.join(d, "container.log"), "w")
            p["proc"] = subprocess.Popen([self.backend] + args, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            p["obj"]["status"] = {"phase": "Running", "podIP": "127.0.0.1"}

    def list(self, ns, selector):
        want = dict(kv.split("=", 1) for kv in selector.split(",") if "=" in kv)
        with self.lock:
            items = [p["obj"] for (n, _), p in self.pods.items()
                     if n == ns and not p["deleted"] and
                     all(p["obj"]["metadata"].get("labels", {}).get(k) == v
                         for k, v in want.items())]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}

    def delete(self, ns, name):
        with self.lock:
            p = self.pods.get((ns, name))
            if p is None or p["deleted"]:
                return status(404, "NotFound", f'pods "{name}" not found')
            p["deleted"] = True
            proc = p["proc"]
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
        return 200, p["obj"]

    def alive(self):
        with self.lock:
            return [name for (_, name), p in self.pods.items() if not p["deleted"]]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for p in self.pods.values():
                if p["proc"] is not None and p["proc"].poll() is None:
                    try:
                        os.killpg(p["proc"].pid, signal.SIGKILL)
                    except OSError:
                        pass
                    p["proc"].wait()
        time.sleep(0)
