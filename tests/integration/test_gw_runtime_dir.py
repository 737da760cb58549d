#!/usr/bin/env python3
"""Hardening item 9: the runtime directory (the backends' ipc:// sockets) is private. A
configured one that group/others can write, or that another user owns, is refused at start-up
(exit 2, the key named, no backend started); the default is a new mkdtemp directory, 0700,
named unpredictably (not framegate-<pid>), and removed when the gateway exits."""
# ctest-timeout: 120
import os
import re
import shutil
import stat
import subprocess
import tempfile

import fg

base = tempfile.mkdtemp(prefix="fgt-rundir-")


def refused(rundir, what):
    port = fg.free_port()
    cmd = [os.path.join(fg.BIN, "framegate"), "--set", f"listen=127.0.0.1:{port}",
           "--set", f"runtime_dir={rundir}", "--set", "backends=1"]
    for k, v in fg.app_model_settings().items():
        cmd += ["--set", f"{k}={v}"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30 * fg.SLOW)
    except subprocess.TimeoutExpired:
        fg.check(False, f"[{what}] the gateway exits at once")
        for p in fg.pids_with_arg(rundir):
            os.kill(p, 9)
        return
    fg.check(r.returncode == 2, f"[{what}] the gateway refuses to start (exit {r.returncode})")
    fg.check("runtime_dir" in r.stderr and rundir in r.stderr,
             f"[{what}] the error names the key and the path ({r.stderr.strip()[:200]!r})")
    fg.check(not [n for n in os.listdir(rundir) if n.endswith(".sock")] and
             not fg.pids_with_arg(rundir), f"[{what}] no backend was started there")


# 1. Planted by another user: world-writable (the attack in the probe), group-writable, and
#    (as root) owned by nobody even with a private mode.
planted = os.path.join(base, "planted")
os.mkdir(planted)
for mode in (0o777, 0o1777, 0o770):
    os.chmod(planted, mode)
    refused(planted, f"mode {mode:04o}")
if os.geteuid() == 0:
    os.chmod(planted, 0o700)
    os.chown(planted, 65534, 65534)
    refused(planted, "owned by nobody")
    os.chown(planted, 0, 0)

# 2. A private configured one is used (the other tests all run that way; here for contrast).
os.chmod(planted, 0o700)
with fg.Gateway(settings={"backends": 1, "runtime_dir": planted}, simulate_ms=1) as gw:
    st, _, _ = gw.detect(fg.image())
    fg.check(st == 200, f"[private] a 0700 runtime_dir of ours is used ({st})")

# 3. Not configured: a fresh private directory under $TMPDIR.
tmpdir = os.path.join(base, "tmp")
os.mkdir(tmpdir, 0o700)
seen = []
for run in range(2):
    with fg.Gateway(settings={"backends": 1, "runtime_dir": ""}, simulate_ms=1,
                    env={"TMPDIR": tmpdir}) as gw:
        st, _, _ = gw.detect(fg.image())
        fg.check(st == 200, f"[default {run}] frames are served ({st})")
        m = re.search(r"event=runtime_dir model=app path=(\S+) created=1", gw.log())
        fg.check(m is not None, "[default] the gateway logs the directory it made")
        if m:
            path = m.group(1)
            seen.append(path)
            st_ = os.stat(path)
            fg.check(os.path.dirname(path) == tmpdir, f"[default] it is under $TMPDIR ({path})")
            fg.check(stat.S_IMODE(st_.st_mode) == 0o700 and st_.st_uid == os.geteuid(),
                     f"[default] it is ours, mode 0700 ({stat.S_IMODE(st_.st_mode):04o})")
            name = os.path.basename(path)
            fg.check(re.fullmatch(r"framegate-[A-Za-z0-9]{6}", name) is not None and
                     name != f"framegate-{gw.proc.pid}",
                     f"[default] its name is random, not the pid ({name}, pid {gw.proc.pid})")
            socks = [n for n in os.listdir(path) if n.endswith(".sock")]
            fg.check(len(socks) == 1, f"[default] the backend's socket is in it ({socks})")
        pids = [p for p in fg.descendants(gw.proc.pid)]
    fg.check(not [p for p in pids if fg.alive(p)], "[default] no backend outlives the gateway")
    if seen:
        fg.check(not os.path.exists(seen[-1]), f"[default] it is removed at exit ({seen[-1]})")
fg.check(len(set(seen)) == 2, f"[default] two runs, two names ({seen})")
shutil.rmtree(base, ignore_errors=True)
fg.finish()
