"""Push cameras for tests and bench scenarios: open-loop feeds that post frames at a fixed
rate, pipelined on one keep-alive connection, whatever the answers (a live camera does not
wait). Standard library only."""
import json
import socket
import threading
import time


def read_response(f):
    """One HTTP response from a buffered socket file: (status, headers, body)."""
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    status = int(line.split()[1])
    headers = {}
    while True:
        h = f.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers.get("content-length", "0")))
    return status, headers, body


class PushCamera:
    """A camera that pushes frames at `fps` whatever the answers (open loop), pipelined on one
    keep-alive connection; a reader thread collects the answers in order."""

    def __init__(self, gw, name, fps, img):
        self.gw, self.name, self.fps = gw, name, fps
        self.answers = []  # (t_sent, t_answered, status, json)
        self.sent = []
        self.stop = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", gw.port))
        self.file = self.sock.makefile("rb")
        self.req = (f"POST /v1/detect?camera={name} HTTP/1.1\r\nHost: x\r\n"
                    f"Content-Type: image/jpeg\r\nContent-Length: {len(img)}\r\n\r\n").encode() + img
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._read, daemon=True)]

    def start(self, phase):
        self.phase = phase
        for t in self.threads:
            t.start()
        return self

    def _send(self):
        time.sleep(self.phase)
        nxt = time.time()
        while not self.stop.is_set():
            with self.lock:
                self.sent.append(time.time())
            try:
                self.sock.sendall(self.req)
            except OSError:
                return
            nxt += 1.0 / self.fps
            time.sleep(max(0, nxt - time.time()))

    def _read(self):
        i = 0
        while True:
            try:
                st, _, body = read_response(self.file)
            except (OSError, EOFError, ValueError, IndexError):
                return
            with self.lock:
                t_sent = self.sent[i] if i < len(self.sent) else None
            i += 1
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            self.answers.append((t_sent, time.time(), st, doc))

    def close(self):
        # after stop is set and the last answers had time to come
        self.threads[0].join(5)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.threads[1].join(5)

    def results(self, t0=None, t1=None):
        return [a for a in self.answers if a[2] == 200 and a[3] and "detections" in a[3]
                and (t0 is None or t0 <= a[0] < t1)]
