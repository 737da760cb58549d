#!/usr/bin/env python3
"""A backend's own output reaches the gateway's log only as structured lines: darknet's parser
chatter ("mask_scale: Using default ...", the layer table) never appears raw, and only at
debug; the backend's other lines appear as event=backend_output at info; a chatty backend is
cut (long lines) and rate-limited (counted as dropped), and its bytes are escaped."""
# ctest-timeout: 180
import os
import re
import stat
import tempfile

import fg

STRUCTURED = re.compile(r'^ts=\S+ level=(error|warn|info|debug) event=[a-z_]+( |$)')


def raw_lines(log):
    """Lines of the gateway's log that are not its structured lines."""
    return [l for l in log.splitlines() if l and not STRUCTURED.match(l)]


def output_lines(log, backend_prefix):
    return [l for l in log.splitlines()
            if " event=backend_output " in l and f" backend={backend_prefix}" in l]


png = open("/usr/lib/python3/dist-packages/skimage/data/astronaut.png", "rb").read()

# 1. The face model (its cfg leaves options out, so darknet prints "mask_scale: Using default")
#    at the default level, info: no chatter at all, the backend's ready line structured.
for level in ("info", "debug"):
    settings = {"models": "face", "backends": 1, "log_level": level}
    with fg.Gateway(settings=settings, app_model=False) as gw:
        st, _, _ = gw.detect(png, content_type="image/png")
        fg.check(st == 200, f"[{level}] a frame is answered ({st})")
    log = gw.log()
    raw = raw_lines(log)
    fg.check(not raw, f"[{level}] every line of the gateway's log is structured ({raw[:3]})")
    fg.check(not any(l.startswith("mask_scale") for l in log.splitlines()),
             f"[{level}] no raw mask_scale line")
    fg.check(not any(re.match(r"^\s+\d+ conv ", l) for l in log.splitlines()),
             f"[{level}] no raw layer table row")
    out = output_lines(log, "face-instance")
    ready = [l for l in out if "ready on ipc://" in l]
    fg.check(len(ready) == 1 and " level=info " in ready[0] and " stream=stderr " in ready[0]
             and re.search(r' line="framegate-backend\[face-instance1\]: ready on ipc://[^"]+"$',
                           ready[0]) is not None,
             f"[{level}] the backend's ready line is a structured info line ({ready[:1]})")
    chatter = [l for l in out if "mask_scale: Using default" in l]
    if level == "info":
        fg.check(not chatter, f"[info] darknet's chatter is not logged at info ({chatter[:1]})")
        fg.check("mask_scale" not in log, "[info] mask_scale appears nowhere in the log")
    else:
        fg.check(len(chatter) == 1 and " level=debug " in chatter[0]
                 and chatter[0].endswith(''' line="mask_scale: Using default '1.000000'"'''),
                 f"[debug] darknet's chatter is a structured debug line ({chatter[:1]})")
        rows = [l for l in out if re.search(r' line="\s+\d+ conv ', l)]
        fg.check(rows and all(" level=debug " in l for l in rows),
                 f"[debug] the layer table rows are debug lines ({len(rows)})")

# 2. A chatty, hostile backend: a 5000-byte line, quotes, escapes and control bytes, then
#    5000 lines at once, before it starts the real backend. The log stays bounded.
tmp = tempfile.mkdtemp(prefix="fgt-chatty-")
script = os.path.join(tmp, "chatty-backend")
real = os.path.join(fg.BIN, "framegate-backend")
with open(script, "w") as f:
    f.write(f"""#!/usr/bin/python3
import os, sys, time
sys.stderr.write("x" * 5000 + "\\n")
sys.stderr.write('say "hi" \\\\ back\\x1b[31m red\\x00nul\\n')
sys.stdout.write("to stdout\\n")
sys.stdout.flush()
time.sleep(1)  # the lines above are read before the flood below fills the window
for i in range(5000):
    sys.stderr.write(f"chatter {{i}}\\n")
sys.stdout.flush()
sys.stderr.flush()
os.execv({real!r}, [{real!r}] + sys.argv[1:])
""")
os.chmod(script, stat.S_IRWXU)
try:
    with fg.Gateway(settings={"backends": 1, "backend_command": script}, simulate_ms=1) as gw:
        st, _, _ = gw.detect(fg.image())
        fg.check(st == 200, f"[chatty] the chatty backend still serves ({st})")
    log = gw.log()
    out = output_lines(log, "app-instance1")
    longest = max((len(l) for l in log.splitlines()), default=0)
    fg.check(longest < 1600, f"[chatty] no log line is longer than the cap allows ({longest})")
    cut = [l for l in out if " cut=1 " in l]
    fg.check(len(cut) == 1 and 'line="' + "x" * 1000 in cut[0],
             f"[chatty] the 5000-byte line is logged once, cut ({len(cut)})")
    esc = [l for l in out if "say " in l]
    fg.check(len(esc) == 1 and esc[0].endswith(r'line="say \"hi\" \\ back\x1b[31m red\x00nul"'),
             f"[chatty] quotes, backslashes and control bytes are escaped ({esc[:1]})")
    fg.check(any(" stream=stdout " in l and 'line="to stdout"' in l for l in out),
             "[chatty] stdout is captured too")
    chatter = [l for l in out if 'line="chatter ' in l]
    fg.check(0 < len(chatter) <= 200, f"[chatty] at most 200 lines logged per window ({len(chatter)})")
    dropped = [int(m.group(1)) for m in re.finditer(
        r"level=warn event=backend_output_dropped backend=app-instance1 lines=(\d+)", log)]
    fg.check(sum(dropped) + len(chatter) >= 5000 - 3 and sum(dropped) > 4000,
             f"[chatty] the dropped lines are counted ({sum(dropped)} dropped, {len(chatter)} logged)")
    fg.check(not raw_lines(log), f"[chatty] nothing raw in the log ({raw_lines(log)[:2]})")
finally:
    os.unlink(script)
    os.rmdir(tmp)
fg.finish()
