"""Network-namespace "hosts" for the remote-backend tests: each host is a namespace with its
own address on a private bridge in the root namespace, where the gateway runs. A host can run
processes (`ip netns exec`), be cut off silently (iptables DROP inside it: no RST, no FIN, like
a pulled cable), healed, or have every process in it killed.

Everything is named after the test's PID (namespaces fgt<PID>-hN, bridge fgt<PID>br, veths
fgt<PID>vN), so cleanup goes by name: Net.close() kills every process in its namespaces and
deletes them, the bridge and its veths; it runs on exit and on SIGTERM/SIGINT, and a later run
deletes what a SIGKILLed run left behind (names whose PID is no longer alive). Needs root,
iproute2 and iptables (scripts/setup.sh installs them)."""
import atexit
import ipaddress
import os
import re
import signal
import subprocess
import sys
import time

PREFIX = "fgt"


def sh(*cmd, check=True, ns=None, capture=False):
    """Runs a command (inside namespace ns if given); returns its stdout when capture."""
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout if capture else r.returncode


def available():
    """None when namespaces can be made here, else the reason (for a skip message)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    for tool in ("ip", "iptables"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in os.environ.get("PATH", "/usr/sbin:/sbin").split(":") + ["/usr/sbin"]):
            return f"{tool} not installed (scripts/setup.sh)"
    return None


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _ns_pids(ns):
    out = sh("ip", "netns", "pids", ns, check=False, capture=True) or ""
    return [int(p) for p in out.split()]


def _kill_ns(ns):
    """SIGKILLs every process in namespace ns (its PIDs as the kernel lists them)."""
    for _ in range(50):
        pids = _ns_pids(ns)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)


def reap_stale():
    """Deletes namespaces and links of earlier runs whose test process is gone (a SIGKILLed
    run cannot clean up after itself)."""
    out = sh("ip", "netns", "list", check=False, capture=True) or ""
    for line in out.splitlines():
        m = re.match(rf"^({PREFIX}(\d+)-h\d+)\b", line)
        if m and not _pid_alive(int(m.group(2))):
            _kill_ns(m.group(1))
            sh("ip", "netns", "del", m.group(1), check=False)
    out = sh("ip", "-o", "link", "show", check=False, capture=True) or ""
    for line in out.splitlines():
        m = re.match(rf"^\d+: ({PREFIX}(\d+)(br|v\d+))[@:]", line)
        if m and not _pid_alive(int(m.group(2))):
            sh("ip", "link", "del", m.group(1), check=False)


def _free_subnet():
    """A 10.77.X.0/24 that no address in the root namespace is in."""
    used = sh("ip", "-o", "-4", "addr", "show", check=False, capture=True) or ""
    taken = set(int(x) for x in re.findall(r"inet 10\.77\.(\d+)\.", used))
    # Start from the PID, so two tests started at once (ctest -j) do not pick the same one.
    for i in range(254):
        x = (os.getpid() + i) % 254 + 1
        if x not in taken:
            return ipaddress.ip_network(f"10.77.{x}.0/24")
    raise RuntimeError("no free 10.77.X.0/24")


class Host:
    """One namespace host: name (namespace), ip (its address on the bridge)."""

    def __init__(self, net, idx, name, ip):
        self.net, self.idx, self.name, self.ip = net, idx, name, ip
        self.procs = []
        self.partitioned = False

    def spawn(self, cmd, log=None, env=None):
        """Starts cmd inside this host; `ip netns exec` execs it, so the Popen's pid is the
        program's own. stdout+stderr go to the file object `log` (or are discarded)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name] + list(cmd),
                             stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT,
                             env=env)
        self.procs.append(p)
        return p

    def run(self, *cmd, check=True, capture=False):
        return sh(*cmd, check=check, ns=self.name, capture=capture)

    def partition(self):
        """Silently drops every packet in and out of this host (no RST, no FIN)."""
        self.run("iptables", "-A", "INPUT", "-j", "DROP")
        self.run("iptables", "-A", "OUTPUT", "-j", "DROP")
        self.partitioned = True

    def heal(self):
        self.run("iptables", "-F")
        self.partitioned = False

    def kill_all(self):
        """SIGKILLs every process of this host, as a host that loses power."""
        _kill_ns(self.name)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def pids(self):
        return _ns_pids(self.name)


class Net:
    """N hosts on a bridge whose root-side address (gateway_ip) is .1; hosts are .2, .3, ...
    Use as a context manager; close() is also registered for exit and SIGTERM/SIGINT."""

    def __init__(self, n):
        reap_stale()
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        self.subnet = _free_subnet()
        addrs = list(self.subnet.hosts())
        self.gateway_ip = str(addrs[0])
        self.hosts = []
        self.closed = False
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            prev = signal.getsignal(sig)

            def on_signal(s, f, prev=prev):
                self.close()
                if callable(prev):
                    prev(s, f)
                sys.exit(128 + s)

            signal.signal(sig, on_signal)
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.gateway_ip}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i in range(n):
                self.add_host(str(addrs[i + 1]))
        except Exception:
            self.close()
            raise

    def add_host(self, ip):
        i = len(self.hosts) + 1
        ns, veth = f"{self.tag}-h{i}", f"{self.tag}v{i}"
        sh("ip", "netns", "add", ns)
        # Record it before configuring, so a failure below is still cleaned up.
        h = Host(self, i, ns, ip)
        self.hosts.append(h)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", veth, "master", self.bridge)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "addr", "add", f"{ip}/24", "dev", "eth0", ns=ns)
        sh("ip", "link", "set", "eth0", "up", ns=ns)
        sh("ip", "link", "set", "lo", "up", ns=ns)
        return h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Kills every process in the hosts, deletes the namespaces, veths and bridge.
        Idempotent; never raises."""
        if self.closed:
            return
        self.closed = True
        for h in self.hosts:
            for p in h.procs:
                if p.poll() is None:
                    try:
                        p.kill()
                    except OSError:
                        pass
            _kill_ns(h.name)
            for p in h.procs:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            sh("ip", "netns", "del", h.name, check=False)
            sh("ip", "link", "del", f"{self.tag}v{h.idx}", check=False)
        sh("ip", "link", "del", self.bridge, check=False)


if __name__ == "__main__":
    # Self-check: two hosts reach the root namespace and each other; a partition is silent;
    # nothing is left behind.
    import socket
    why = available()
    if why:
        print("skip:", why)
        sys.exit(0)
    with Net(2) as net:
        a, b = net.hosts
        srv = a.spawn([sys.executable, "-c",
                       "import socket;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                       "socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',7999));s.listen();"
                       "c,_=s.accept();c.sendall(b'hi');c.close()"])
        for _ in range(100):
            try:
                c = socket.create_connection((a.ip, 7999), timeout=3)
                break
            except ConnectionRefusedError:
                time.sleep(0.05)
        assert c.recv(2) == b"hi"
        c.close()
        assert b.run("ip", "route", "get", a.ip, capture=True)
        a.partition()
        t0 = time.time()
        try:
            socket.create_connection((a.ip, 7999), timeout=1)
            raise AssertionError("connected through a partition")
        except socket.timeout:
            pass
        assert time.time() - t0 >= 0.9, "a partition must be silent (a timeout, not a refusal)"
        a.heal()
        names = [h.name for h in net.hosts]
    left = sh("ip", "netns", "list", capture=True)
    assert not any(n in left for n in names), left
    assert net.bridge not in sh("ip", "-o", "link", "show", capture=True)
    print("netns self-check passed")
