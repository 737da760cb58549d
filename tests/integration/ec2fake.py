#!/usr/bin/python3
"""A small EC2 Query API server for framegate's ec2 provider tests: RunInstances,
DescribeInstances and TerminateInstances over HTTPS on 127.0.0.1, every request's SigV4
signature checked by botocore's SigV4Auth (Debian's python3-botocore: an implementation
independent of framegate's sigv4.c), the answers in EC2's XML shapes
(../shared/reference/cloud-apis.md 1.4).

"Booting" an instance runs its user data (the shell script framegate wrote) with
FG_ETC=<instance dir> FG_ADDR=127.0.0.1 FG_LISTEN_HOST=127.0.0.1 FG_PORT=<a free port>, so a real
framegate-backend starts, joins the gateway over mutual TLS and answers frames. Terminating
one stops that process (SIGTERM, SIGKILL after 5 s).

Checks, each failure answered as EC2 does (<Response><Errors><Error><Code>...): Authorization
well formed (AuthFailure), the access key (AuthFailure), the scope's service ec2 and region,
X-Amz-Date within 15 minutes (RequestExpired), the signature (SignatureDoesNotMatch: 403).

Used in-process by the tests (Ec2Fake), so they can read and steer its state: `throttle = N`
answers the next N requests 503 RequestLimitExceeded; `boot = False` makes instances stay
pending without starting anything; `requests` counts actions; `refused` counts bad
signatures."""
import base64
import datetime
import http.server
import os
import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from xml.sax.saxutils import escape

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    def __init__(self, iid, token, form):
        self.id = iid
        self.client_token = token
        self.state = "pending"
        self.form = form
        self.tags = {}
        for k, v in form.items():
            if k.startswith("TagSpecification.1.Tag.") and k.endswith(".Key"):
                self.tags[v] = form.get(k[:-4] + ".Value", "")
        self.user_data = base64.b64decode(form.get("UserData", "")).decode()
        self.proc = None
        self.port = None
        self.launched = time.time()
        self.terminated_at = None


class Ec2Fake:
    def __init__(self, certfile, keyfile, workdir, access_key, secret_key, region="us-east-1",
                 boot_delay=0.2):
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.keys = {access_key: (secret_key, None)}  # access key -> (secret, session token)
        self.workdir = workdir
        self.boot_delay = boot_delay
        self.lock = threading.Lock()
        self.instances = {}  # id -> Instance
        self.throttle = 0
        self.boot = True
        self.requests = {}
        self.refused = 0
        self.errors = []  # (code, message) answered
        self.port = free_port()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                if n > 1 << 20:
                    return self.answer(413, fake.error("RequestEntityTooLarge", "body"))
                body = self.rfile.read(n)
                status, xml = fake.handle(self.headers, body)
                self.answer(status, xml)

            def answer(self, status, xml):
                data = xml.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        # a client that hangs up mid-answer (a gateway killed on purpose) is no error here
        self.httpd.handle_error = lambda request, address: None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.port}/"

    # ---- checks ----

    def error(self, code, message):
        self.errors.append((code, message))
        return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>"
                f"{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
                f"<RequestID>{secrets.token_hex(8)}</RequestID></Response>")

    def verify(self, headers, body):
        """None if the SigV4 signature is right, else (status, code, message)."""
        auth = headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return 401, "AuthFailure", "no AWS4-HMAC-SHA256 Authorization header"
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        cred = parts.get("Credential", "").split("/")
        if len(cred) != 5 or cred[4] != "aws4_request":
            return 401, "AuthFailure", "malformed Credential"
        if cred[0] not in self.keys:
            return 401, "AuthFailure", "AWS was not able to validate the provided access credentials"
        secret, want_token = self.keys[cred[0]]
        if cred[2] != self.region or cred[3] != "ec2":
            return 401, "AuthFailure", f"wrong scope region/service {cred[2]}/{cred[3]}"
        amz = headers.get("X-Amz-Date", "")
        try:
            t = datetime.datetime.strptime(amz, "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            return 400, "AuthFailure", "bad X-Amz-Date"
        if abs((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) > 900:
            return 400, "RequestExpired", "Request has expired."
        if cred[1] != amz[:8]:
            return 401, "AuthFailure", "scope date is not X-Amz-Date's"
        signed = parts.get("SignedHeaders", "").split(";")
        for need in ("host", "x-amz-date"):
            if need not in signed:
                return 401, "AuthFailure", f"{need} is not signed"
        token = headers.get("X-Amz-Security-Token")
        if token != want_token:
            return 401, "AuthFailure", "The security token included in the request is invalid"
        if token is not None and "x-amz-security-token" not in signed:
            return 401, "AuthFailure", "x-amz-security-token is not signed"
        req = AWSRequest(method="POST", url=f"https://{headers.get('Host')}/", data=body,
                         headers={h: headers.get(h, "") for h in signed})
        req.context["timestamp"] = amz
        sv = SigV4Auth(Credentials(cred[0], secret, token), "ec2", self.region)
        creq = sv.canonical_request(req)
        sts = sv.string_to_sign(req, creq)
        want = sv.signature(sts, req)
        if parts.get("Signature") != want:
            return 403, "SignatureDoesNotMatch", (
                "The request signature we calculated does not match the signature you provided.")
        return None

    # ---- the API ----

    def handle(self, headers, body):
        bad = self.verify(headers, body)
        if bad is not None:
            with self.lock:
                self.refused += 1
            return bad[0], self.error(bad[1], bad[2])
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        action = form.get("Action", "")
        with self.lock:
            self.requests[action] = self.requests.get(action, 0) + 1
            if self.throttle > 0:
                self.throttle -= 1
                return 503, self.error("RequestLimitExceeded", "Request limit exceeded.")
        if form.get("Version") != "2016-11-15":
            return 400, self.error("InvalidParameterValue", "Version")
        fn = {"RunInstances": self.run, "DescribeInstances": self.describe,
              "TerminateInstances": self.terminate}.get(action)
        if fn is None:
            return 400, self.error("InvalidAction", f"The action {action} is not valid")
        return fn(form)

    def item(self, i):
        tags = "".join(f"<item><key>{escape(k)}</key><value>{escape(v)}</value></item>"
                       for k, v in i.tags.items())
        ip = "<privateIpAddress>127.0.0.1</privateIpAddress>" if i.state == "running" else ""
        return (f"<item><instanceId>{i.id}</instanceId><imageId>{escape(i.form.get('ImageId', ''))}"
                f"</imageId><instanceState><code>{STATE_CODES[i.state]}</code><name>{i.state}"
                f"</name></instanceState><privateDnsName/>{ip}<instanceType>"
                f"{escape(i.form.get('InstanceType', ''))}</instanceType><clientToken>"
                f"{escape(i.client_token)}</clientToken><tagSet>{tags}</tagSet></item>")

    def run(self, form):
        for k in ("ImageId", "InstanceType", "UserData", "ClientToken"):
            if not form.get(k):
                return 400, self.error("MissingParameter", f"{k} is required")
        if form.get("MinCount") != "1" or form.get("MaxCount") != "1":
            return 400, self.error("InvalidParameterValue", "MinCount/MaxCount")
        with self.lock:
            token = form["ClientToken"]
            same = [i for i in self.instances.values() if i.client_token == token]
            if same:  # idempotent, as EC2's ClientToken
                inst = same[0]
            else:
                inst = Instance("i-" + secrets.token_hex(9)[:17], token, form)
                self.instances[inst.id] = inst
                threading.Timer(self.boot_delay, self.start_instance, (inst,)).start()
            x = self.item(inst)
        return 200, (f"<RunInstancesResponse xmlns=\"{NS}\"><requestId>{secrets.token_hex(8)}"
                     f"</requestId><reservationId>r-{secrets.token_hex(8)}</reservationId>"
                     f"<instancesSet>{x}</instancesSet></RunInstancesResponse>")

    def start_instance(self, inst):
        with self.lock:
            if inst.state != "pending" or not self.boot:
                return
            inst.state = "running"
            inst.port = free_port()
            d = os.path.join(self.workdir, inst.id)
            os.makedirs(d, exist_ok=True)
            script = os.path.join(d, "user-data.sh")
            with open(script, "w") as f:
                f.write(inst.user_data)
            env = dict(os.environ, FG_ETC=d, FG_ADDR="127.0.0.1", FG_LISTEN_HOST="127.0.0.1",
                       FG_PORT=str(inst.port))
            log = open(os.path.join(d, "console.log"), "w")
            inst.proc = subprocess.Popen(["/bin/sh", script], env=env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def describe(self, form):
        ids = {v for k, v in form.items() if k.startswith("InstanceId.")}
        filters = {}
        for k, v in form.items():
            if k.startswith("Filter.") and k.endswith(".Name"):
                pre = k[:-5]
                filters[v] = {fv for fk, fv in form.items() if fk.startswith(pre + ".Value.")}
        out = []
        with self.lock:
            for i in self.instances.values():
                if ids and i.id not in ids:
                    continue
                ok = True
                for name, values in filters.items():
                    if name.startswith("tag:"):
                        ok = ok and i.tags.get(name[4:]) in values
                    elif name == "instance-state-name":
                        ok = ok and i.state in values
                if ok:
                    out.append(self.item(i))
        items = "".join(f"<item><reservationId>r-0</reservationId><instancesSet>{x}"
                        f"</instancesSet></item>" for x in out)
        return 200, (f"<DescribeInstancesResponse xmlns=\"{NS}\"><requestId>"
                     f"{secrets.token_hex(8)}</requestId><reservationSet>{items}"
                     f"</reservationSet></DescribeInstancesResponse>")

    def terminate(self, form):
        ids = [v for k, v in sorted(form.items()) if k.startswith("InstanceId.")]
        out = []
        with self.lock:
            for iid in ids:
                i = self.instances.get(iid)
                if i is None:
                    return 400, self.error("InvalidInstanceID.NotFound",
                                           f"The instance ID '{iid}' does not exist")
                prev = i.state
                if i.state != "terminated":
                    i.state = "terminated"
                    i.terminated_at = time.time()
                    self.kill(i)
                out.append(f"<item><instanceId>{i.id}</instanceId><currentState><code>48</code>"
                           f"<name>terminated</name></currentState><previousState><code>"
                           f"{STATE_CODES[prev]}</code><name>{prev}</name></previousState></item>")
        return 200, (f"<TerminateInstancesResponse xmlns=\"{NS}\"><requestId>"
                     f"{secrets.token_hex(8)}</requestId><instancesSet>{''.join(out)}"
                     f"</instancesSet></TerminateInstancesResponse>")

    def kill(self, i):
        p = i.proc
        if p is None or p.poll() is not None:
            return

        def stop():
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
        threading.Thread(target=stop, daemon=True).start()

    # ---- for the tests ----

    def alive(self):
        """Instances not terminated."""
        with self.lock:
            return [i for i in self.instances.values() if i.state != "terminated"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for i in self.instances.values():
                if i.proc is not None and i.proc.poll() is None:
                    try:
                        os.killpg(i.proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    i.proc.wait()


class Imds:
    """The instance metadata service, IMDSv2 only: PUT /latest/api/token (with
    X-aws-ec2-metadata-token-ttl-seconds) gives a token that every GET must carry
    (X-aws-ec2-metadata-token), else 401; the role's temporary credentials are registered with
    the Ec2Fake, so requests signed with them (and their session token) are accepted."""

    def __init__(self, ec2, role="framegate-role"):
        self.token = secrets.token_hex(16)
        self.role = role
        self.gets = 0
        self.refused = 0
        ak, sk, st = "ASIA" + secrets.token_hex(8).upper(), secrets.token_hex(20), \
            secrets.token_hex(32)
        ec2.keys[ak] = (sk, st)
        exp = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=6))
        self.creds = ('{"Code":"Success","Type":"AWS-HMAC","AccessKeyId":"%s",'
                      '"SecretAccessKey":"%s","Token":"%s","Expiration":"%s"}'
                      % (ak, sk, st, exp.strftime("%Y-%m-%dT%H:%M:%SZ")))
        imds = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, text):
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path != "/latest/api/token" or \
                        not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    imds.refused += 1
                    return self.reply(400, "")
                self.reply(200, imds.token)

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != imds.token:
                    imds.refused += 1
                    return self.reply(401, "")
                imds.gets += 1
                base = "/latest/meta-data/iam/security-credentials/"
                if self.path == base:
                    return self.reply(200, imds.role)
                if self.path == base + imds.role:
                    return self.reply(200, imds.creds)
                self.reply(404, "")

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def setup(prefix, src, boot_delay=0.2):
    """For a test: a private CA (scripts/certs.sh under `src`) with the instances' and the
    fake's certificates, and a started Ec2Fake. Returns (fake, pki dir, work dir)."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix=prefix)
    pki = os.path.join(tmp, "pki")
    certs = os.path.join(src, "scripts", "certs.sh")
    for args in (["init", pki, "--ip", "127.0.0.1"], ["issue", pki, "cloud", "--ip", "127.0.0.1"],
                 ["issue", pki, "ec2api", "--ip", "127.0.0.1"]):
        subprocess.run([certs] + args, check=True, stdout=subprocess.DEVNULL)
    fake = Ec2Fake(os.path.join(pki, "ec2api.crt"), os.path.join(pki, "ec2api.key"),
                   os.path.join(tmp, "cloud"), "AKIDEXAMPLE",
                   "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", boot_delay=boot_delay)
    return fake, pki, tmp


def gateway_settings(fake, pki, cluster, backend, join_port):
    """The --set keys of a gateway whose cloud tier is this fake (`backend`: the path of
    framegate-backend the user data runs), and the environment with the fake's key."""
    settings = {
        "join_listen": f"tls+tcp://127.0.0.1:{join_port}",
        "tls_ca": os.path.join(pki, "ca.crt"), "tls_cert": os.path.join(pki, "gateway.crt"),
        "tls_key": os.path.join(pki, "gateway.key"),
        "cloud_backend_cert": os.path.join(pki, "cloud.crt"),
        "cloud_backend_key": os.path.join(pki, "cloud.key"),
        "cloud_backend_command": backend,
        "cloud_cluster": cluster, "cloud_reap_interval_ms": 1000, "cloud_api_timeout_ms": 5000,
        "ec2_endpoint": fake.url, "ec2_ca_file": os.path.join(pki, "ca.crt"),
        "ec2_image": "ami-0123456789abcdef0", "ec2_instance_type": "t3.micro",
    }
    env = {"AWS_ACCESS_KEY_ID": fake.access_key, "AWS_SECRET_ACCESS_KEY": fake.secret_key,
           "AWS_SHARED_CREDENTIALS_FILE": os.path.join(fake.workdir, "none")}
    return settings, env
