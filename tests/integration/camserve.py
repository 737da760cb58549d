"""Local cameras for the pull tests: an MJPEG server (multipart/x-mixed-replace) and a JPEG
snapshot server on 127.0.0.1, serving Debian's darknet sample JPEGs. They can be stopped
(every open connection dropped) and started again on the same port, and told to send a bad
part next, to test the gateway's reconnection and its checks."""
import glob
import os
import socket
import threading
import time

DATA = "/usr/share/darknet/data"  # Debian's darknet package
JPEGS = [open(p, "rb").read() for p in sorted(glob.glob(os.path.join(DATA, "*.jpg")))]
BOUNDARY = "fgframe"


class CamServer:
    """One listening socket; each connection gets a thread. GET /video.mjpg streams frames at
    `fps`; GET /snap.jpg answers one JPEG. `bad` (set by the test) makes the next MJPEG part
    bad: "oversized" (a real part over the camera's max_frame_bytes), "declared" (a
    Content-Length over it), "notjpeg" (text declared as image/jpeg)."""

    def __init__(self, fps=20, port=0):
        self.fps = fps
        self.port = port
        self.bad = None
        self.frames_sent = 0
        self.snaps = 0
        self.conns = 0
        self.video_serial = 0  # the newest stream connection: the one a bad part goes to
        self.lock = threading.Lock()
        self.sock = None
        self.clients = []
        self.running = False

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        self.port = s.getsockname()[1]
        self.sock = s
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        """Closes the listener and drops every connection (the camera goes away)."""
        self.running = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.clients:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()
            self.clients = []

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.clients.append(c)
                self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                d = c.recv(4096)
                if not d:
                    return
                req += d
            path = req.split(b" ")[1].decode()
            if path.startswith("/snap.jpg"):
                with self.lock:
                    self.snaps += 1
                    img = JPEGS[self.snaps % len(JPEGS)]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d"
                          b"\r\nConnection: close\r\n\r\n" % len(img) + img)
                return
            if not path.startswith("/video.mjpg"):
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            c.sendall(("HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; "
                       f"boundary={BOUNDARY}\r\nCache-Control: no-cache\r\n"
                       "Connection: close\r\n\r\n").encode())
            with self.lock:
                self.video_serial += 1
                me = self.video_serial
            t0 = time.time()
            n = 0
            while self.running:
                # Only the newest connection takes a bad part: an older one the gateway has
                # already dropped would swallow it on a dead socket.
                with self.lock:
                    bad = self.bad if me == self.video_serial else None
                    if bad is not None:
                        self.bad = None
                if bad == "oversized":
                    body = b"\xff\xd8\xff\xe0" + b"\0" * (3 << 20)
                    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}"
                elif bad == "declared":
                    body = JPEGS[0]
                    head = "Content-Type: image/jpeg\r\nContent-Length: 999999999"
                elif bad == "notjpeg":
                    body = b"this is not a picture" * 10
                    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}"
                else:
                    body = JPEGS[n % len(JPEGS)]
                    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}"
                c.sendall(f"--{BOUNDARY}\r\n{head}\r\n\r\n".encode() + body + b"\r\n")
                with self.lock:
                    self.frames_sent += 1
                n += 1
                delay = t0 + n / self.fps - time.time()
                if delay > 0:
                    time.sleep(delay)
        except OSError:
            pass
        finally:
            with self.lock:
                if c in self.clients:
                    self.clients.remove(c)
            c.close()


class Events:
    """Reads a camera's Server-Sent Events from the gateway; keeps (id, data, t_received)."""

    def __init__(self, port, name):
        import json
        self._json = json
        self.events = []
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"GET /v1/cameras/{name}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf, head = b"", b""
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError:
                return
            if not d:
                return
            buf += d
            if not head and b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
            while head and b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                f = dict(l.split(": ", 1) for l in ev.decode().split("\n") if ": " in l)
                if "id" in f:
                    self.events.append((int(f["id"]), self._json.loads(f["data"]), time.time()))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.t.join(5)
