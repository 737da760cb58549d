"""Shared helpers for framegate's integration tests: start the real gateway (which spawns
the real backends) on a free loopback port, talk HTTP to it, and clean up every process by
PID. Standard library only; runs under Debian's /usr/bin/python3."""
import atexit
import base64
import calendar
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

BIN = os.environ.get("FG_BIN_DIR") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "bin")
SRC = os.environ.get("FG_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
DATA = "/usr/share/darknet/data"
SANITIZE = os.environ.get("FG_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
# Under ASan everything is slower; tests scale their waits by this.
SLOW = 3.0 if SANITIZE else 1.0

_failures = []
_passed = 0


def log(*a):
    print(*a, flush=True)


def check(cond, what):
    """Records a failed assertion without stopping, so one run reports everything."""
    global _passed
    if cond:
        _passed += 1
        log("ok   -", what)
    else:
        log("FAIL -", what)
        _failures.append(what)
    return cond


def finish():
    if _failures:
        log(f"{_passed} passed, {len(_failures)} failed")
        for f in _failures:
            log("  failed:", f)
        sys.exit(1)
    log("all checks passed")
    sys.exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, timeout, step=0.1):
    """cond()'s first true value within timeout seconds (scaled by SLOW), else None."""
    end = time.time() + timeout * SLOW
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def log_times(text, event, contains=""):
    """Wall-clock times (time.time() scale) of the gateway log's lines with event=`event` that
    contain `contains`: the gateway's own record of when something happened, which a test's
    polling can miss or see late on a loaded machine."""
    out = []
    for line in text.splitlines():
        if f" event={event} " in line + " " and contains in line and line.startswith("ts="):
            ts = line[3:].split()[0]  # 2026-01-02T03:04:05.678Z (UTC)
            out.append(calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) +
                       float(ts[19:-1]))
    return out


def ready_count(gw):
    """The gateway's backends in state ready (/v1/backends)."""
    return sum(1 for b in gw.backends()["backends"] if b["state"] == "ready")


def image(name="dog.jpg"):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return st[st.rfind(")") + 2] != "Z"
    except OSError:
        return False


def descendants(pid):
    """PIDs whose parent chain leads to pid (read from /proc)."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    st = f.read()
                ppid = int(st[st.rfind(")") + 2:].split()[1])
                parents.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in parents.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def rss_kb(pid):
    """The resident memory of pid in kB (VmRSS), 0 if unknown."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pids_with_arg(text):
    """PIDs whose command line contains `text` (used to find backends by runtime dir)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        out.append(int(d))
            except OSError:
                pass
    return out


def cache_dir():
    return os.environ.get("FRAMEGATE_CACHE") or os.path.join(
        os.environ.get("HOME") or "/root", ".cache", "framegate")


def app_model_settings(name="app"):
    """--set keys declaring the one model `name` served, on yolov3-tiny's files."""
    return {
        "models": name,
        f"model.{name}.cfg": "/usr/share/darknet/cfg/yolov3-tiny.cfg",
        f"model.{name}.weights": os.path.join(cache_dir(), "models", "yolov3-tiny.weights"),
        f"model.{name}.names": os.path.join(DATA, "coco.names"),
    }


def face_model_settings(name):
    """--set keys declaring a second copy `name` of the face model (the default model's files
    and face-api's pre-processing, threshold and NMS), beside "face"."""
    models = os.path.join(cache_dir(), "models")
    return {
        f"model.{name}.cfg": os.path.join(models, "face-tiny.cfg"),
        f"model.{name}.weights": os.path.join(models, "face-tiny.weights"),
        f"model.{name}.names": os.path.join(models, "face.names"),
        f"model.{name}.preprocess": "faceapi",
        f"model.{name}.input_size": 416,
        f"model.{name}.threshold": 0.5,
        f"model.{name}.nms": 0.4,
    }


_rundirs = []


@atexit.register
def _remove_rundirs():
    """Every run directory goes when the test process exits (logs were printed by then)."""
    if os.environ.get("FG_KEEP_RUNDIR"):
        return
    for d in _rundirs:
        shutil.rmtree(d, ignore_errors=True)


def _die_with_parent():
    """Runs in the child before exec: the gateway gets SIGKILL when this test process dies,
    even by ctest's timeout SIGKILL, and its backends follow it (--parent-pid)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Gateway:
    """A running framegate with its backends. Use as a context manager."""

    def __init__(self, settings=None, simulate_ms=None, init_delay_ms=None, extra_args=None,
                 env=None, wait_ready=True, backend_args="", app_model=True):
        self.port = free_port()
        self.rundir = tempfile.mkdtemp(prefix="fgt-")
        _rundirs.append(self.rundir)
        self.settings = {
            "listen": f"127.0.0.1:{self.port}",
            "runtime_dir": self.rundir,
            "log_level": "info",
        }
        if app_model:
            # The tests serve one model, "app" (Debian's yolov3-tiny with the generated
            # weights), which follows the top-level pool keys: its backends are
            # app-instance1, ... Tests about several models pass app_model=False.
            self.settings.update(app_model_settings())
        args = backend_args
        if simulate_ms is not None:
            args += f" --simulate-ms {simulate_ms}"
        if init_delay_ms is not None:
            args += f" --init-delay-ms {init_delay_ms}"
        if args.strip():
            self.settings["backend_args"] = args.strip()
        self.settings.update(settings or {})
        self.extra_args = extra_args or []
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.wait_ready = wait_ready
        self.proc = None
        self.logfile = open(os.path.join(self.rundir, "gateway.log"), "w+")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        cmd = [os.path.join(BIN, "framegate")]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        cmd += self.extra_args
        self.proc = subprocess.Popen(cmd, stdout=self.logfile, stderr=subprocess.STDOUT,
                                     env=self.env, preexec_fn=_die_with_parent)
        deadline = time.time() + 60 * SLOW
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                st, _, body = self.request("GET", "/readyz" if self.wait_ready else "/healthz",
                                           timeout=2)
                # /readyz is 200 as soon as a frame would be served (a backend starting
                # counts); the tests want a backend actually ready.
                if st == 200 and (not self.wait_ready or json.loads(body)["backends_ready"] > 0):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        log = self.log()
        self.stop(sig=signal.SIGKILL, timeout=5)  # never leave it running behind a failure
        raise RuntimeError("gateway not ready in time:\n" + log)

    def log(self):
        self.logfile.flush()
        with open(self.logfile.name) as f:
            return f.read()

    def backend_pids(self):
        return [p for p in pids_with_arg(self.rundir) if p != (self.proc.pid if self.proc else -1)]

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Stops the gateway (and by PID anything it left behind); returns its exit code."""
        if self.proc is None:
            return None
        code = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                code = self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                # A gateway that does not exit is a bug: say where it is before killing it.
                log(f"gateway pid {self.proc.pid} still running {timeout * SLOW:.0f} s after "
                    f"signal {int(sig)}; its stacks and the end of its log:")
                try:
                    bt = subprocess.run(["gdb", "-batch", "-p", str(self.proc.pid), "-ex",
                                         "thread apply all bt"], capture_output=True,
                                        text=True, timeout=60)
                    log(bt.stdout[-12000:])
                except (OSError, subprocess.SubprocessError) as e:
                    log(f"(no stacks: {e})")
                log("\n".join(self.log().splitlines()[-60:]))
                self.proc.kill()
                code = self.proc.wait()
        else:
            code = self.proc.returncode
        # No test leaves a process behind, whatever happened.
        deadline = time.time() + 5
        while self.backend_pids() and time.time() < deadline:
            time.sleep(0.05)
        for p in self.backend_pids():
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        self.proc = None
        return code

    # ---- HTTP ----

    def conn(self, timeout=60):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout * SLOW)

    def request(self, method, path, body=None, headers=None, timeout=60, conn=None):
        c = conn or self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            data = r.read()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
        finally:
            if conn is None:
                c.close()

    def detect(self, img, query="", content_type="image/jpeg", conn=None, timeout=60):
        return self.request("POST", "/v1/detect" + query, body=img,
                            headers={"Content-Type": content_type}, conn=conn, timeout=timeout)

    def json(self, path):
        st, _, data = self.request("GET", path)
        return json.loads(data) if st == 200 else None

    def backends(self):
        return self.json("/v1/backends")

    def metrics(self):
        st, _, data = self.request("GET", "/metrics")
        return data.decode()


def iou(a, b):
    """Intersection over union of two answer boxes ({"x", "y", "w", "h"})."""
    x0, y0 = max(a["x"], b["x"]), max(a["y"], b["y"])
    x1 = min(a["x"] + a["w"], b["x"] + b["w"])
    y1 = min(a["y"] + a["h"], b["y"] + b["h"])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a["w"] * a["h"] + b["w"] * b["h"] - inter)


def metric_value(text, name, labels=None):
    """Sum of the samples of `name` whose labels include `labels` (dict)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, val = line.rpartition(" ")
        mname = head.split("{")[0]
        if mname != name:
            continue
        ok = True
        for k, v in (labels or {}).items():
            if f'{k}="{v}"' not in head:
                ok = False
        if ok:
            total += float(val)
    return total


def b64_json(img, **extra):
    d = {"image": base64.b64encode(img).decode()}
    d.update(extra)
    return json.dumps(d).encode()


def multipart(parts):
    """parts: list of (name, filename or None, content_type or None, bytes)."""
    boundary = "fgt" + uuid.uuid4().hex
    # a bytearray: `bytes +=` copied the whole body per part (minutes for a 200-image job)
    out = bytearray()
    for name, fn, ct, data in parts:
        out += f"--{boundary}\r\n".encode()
        disp = f'Content-Disposition: form-data; name="{name}"'
        if fn:
            disp += f'; filename="{fn}"'
        out += disp.encode() + b"\r\n"
        if ct:
            out += f"Content-Type: {ct}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class Load:
    """N closed-loop clients on keep-alive connections, each posting `per_client` frames (or
    until stop() when per_client is None). Records every status (or exception) as (status,
    seconds, body of a non-200, time.time() at its start)."""

    def __init__(self, gw, clients, per_client=None, img=None, query="", timeout=60):
        self.gw, self.clients, self.per_client = gw, clients, per_client
        self.img = img or image()
        self.query = query
        self.timeout = timeout
        self.results = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def _run(self, idx):
        c = None
        n = 0
        while not self.stopping.is_set() and (self.per_client is None or n < self.per_client):
            n += 1
            t0 = time.time()
            try:
                if c is None:
                    c = self.gw.conn(self.timeout)
                st, hdrs, body = self.gw.detect(self.img, f"?camera=cam-{idx}{self.query}",
                                                conn=c)
                res = (st, time.time() - t0, body if st != 200 else None, t0)
                if hdrs.get("connection", "").lower() == "close":
                    c.close()
                    c = None
            except Exception as e:  # connection errors count as failures
                res = ("exc:" + type(e).__name__ + ":" + str(e), time.time() - t0, None, t0)
                if c is not None:
                    c.close()
                c = None
            with self.lock:
                self.results.append(res)
        if c is not None:
            c.close()

    def start(self, spawn_per_s=None):
        for i in range(self.clients):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
            if spawn_per_s:
                time.sleep(1.0 / spawn_per_s)
        return self

    def stop(self):
        self.stopping.set()
        return self.join()

    def join(self, timeout=120):
        end = time.time() + timeout * SLOW
        for t in self.threads:
            t.join(max(0.1, end - time.time()))
        return self

    def statuses(self):
        out = {}
        with self.lock:
            for r in self.results:
                out[r[0]] = out.get(r[0], 0) + 1
        return out

    def failures(self):
        with self.lock:
            return [r for r in self.results if r[0] != 200]
