#!/usr/bin/env python3
"""deploy/kubernetes/ parses (python3-yaml) and its objects fit together: the kustomization
lists every file; the Service and the PodDisruptionBudget select the gateway's pods; ports and
probes name ports that exist; the Deployment's ServiceAccount, ConfigMap and the Role binding
exist; the Role lets the future pods provider manage pods and read the backend PodTemplate;
pods run as the image's non-root user (uid in scripts/docker/Dockerfile); grace periods cover
the gateway's; the image is the one docker-compose.yml builds. The ConfigMap's settings are
loaded by the real gateway binary (--print-config), and the backend template's arguments are
accepted by the real backend's option parser. No cluster is needed."""
import glob
import os
import re
import socket
import subprocess
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fg  # noqa: E402

SRC = os.path.abspath(fg.SRC)
K8S = os.path.join(SRC, "deploy", "kubernetes")
check = fg.check

docs = {}  # (kind, name) -> object
files = sorted(os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml")))
kustomization = None
for f in files:
    try:
        objs = [o for o in yaml.safe_load_all(open(os.path.join(K8S, f))) if o is not None]
    except yaml.YAMLError as e:
        check(False, f"{f} parses: {e}")
        continue
    check(objs != [], f"{f} parses ({len(objs)} object(s))")
    for o in objs:
        ok = isinstance(o, dict) and o.get("apiVersion") and o.get("kind")
        if not check(bool(ok), f"{f}: every object has apiVersion and kind"):
            continue
        if o["kind"] == "Kustomization":
            kustomization = o
            continue
        name = (o.get("metadata") or {}).get("name")
        check(bool(name), f"{f}: {o['kind']} has a name")
        check((o["kind"], name) not in docs, f"{o['kind']}/{name} defined once")
        docs[(o["kind"], name)] = o

check(kustomization is not None, "kustomization.yaml is there")
if kustomization:
    res = kustomization.get("resources", [])
    check(sorted(res) == sorted(f for f in files if f != "kustomization.yaml"),
          f"the kustomization lists every manifest and only those ({res})")


def one(kind):
    objs = [o for (k, _), o in docs.items() if k == kind]
    check(len(objs) == 1, f"one {kind} ({len(objs)})")
    return objs[0] if objs else {}


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


dep = one("Deployment")
svc = one("Service")
pdb = one("PodDisruptionBudget")
sa = one("ServiceAccount")
role = one("Role")
rb = one("RoleBinding")
cm = one("ConfigMap")
tpl = one("PodTemplate")

pod = dep.get("spec", {}).get("template", {})
pod_labels = pod.get("metadata", {}).get("labels", {})
spec = pod.get("spec", {})
check(selects(dep.get("spec", {}).get("selector", {}).get("matchLabels"), pod_labels),
      "the Deployment's selector matches its pod template")
check(selects(svc.get("spec", {}).get("selector"), pod_labels),
      "the Service selects the gateway pods")
check(selects(pdb.get("spec", {}).get("selector", {}).get("matchLabels"), pod_labels),
      "the PodDisruptionBudget selects the gateway pods")
check(not selects(svc.get("spec", {}).get("selector"),
                  tpl.get("template", {}).get("metadata", {}).get("labels", {})),
      "the Service does not select backend pods")
replicas = dep.get("spec", {}).get("replicas", 1)
check(isinstance(pdb.get("spec", {}).get("minAvailable"), int)
      and pdb["spec"]["minAvailable"] < replicas,
      f"the PDB's minAvailable is below the replicas ({replicas}): a drain can proceed")

containers = spec.get("containers", [])
check(len(containers) == 1, "one gateway container")
c = containers[0] if containers else {}
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
check(ports.get("http") == 8080, f"the gateway container exposes http = 8080 ({ports})")
for sp in svc.get("spec", {}).get("ports", []):
    tp = sp.get("targetPort")
    check(tp in ports or tp in ports.values(), f"Service port {sp.get('port')} -> {tp} exists")
for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                    ("startupProbe", "/healthz")):
    hg = c.get(probe, {}).get("httpGet", {})
    check(hg.get("path") == path and (hg.get("port") in ports or hg.get("port") in ports.values()),
          f"{probe} GETs {path} on a declared port ({hg})")

check(spec.get("serviceAccountName") == sa.get("metadata", {}).get("name"),
      f"the Deployment runs as the ServiceAccount ({spec.get('serviceAccountName')})")
refs = [e.get("configMapRef", {}).get("name") for e in c.get("envFrom", [])]
check(cm.get("metadata", {}).get("name") in refs and all(("ConfigMap", r) in docs for r in refs),
      f"the gateway's envFrom names the ConfigMap ({refs})")
check(rb.get("roleRef", {}).get("kind") == "Role"
      and rb.get("roleRef", {}).get("name") == role.get("metadata", {}).get("name"),
      "the RoleBinding refers to the Role")
check(any(s.get("kind") == "ServiceAccount" and s.get("name") == sa.get("metadata", {}).get("name")
          for s in rb.get("subjects", [])), "the RoleBinding binds the gateway's ServiceAccount")
verbs = set()
tpl_read = False
for r in role.get("rules", []):
    if "pods" in r.get("resources", []) and "" in r.get("apiGroups", []):
        verbs |= set(r.get("verbs", []))
    if "podtemplates" in r.get("resources", []) and "get" in r.get("verbs", []):
        tpl_read = tpl.get("metadata", {}).get("name") in r.get("resourceNames", [])
check({"create", "delete", "get", "list", "watch"} <= verbs,
      f"the Role lets the pods provider manage pods ({sorted(verbs)})")
check(tpl_read, "the Role lets it read the backend PodTemplate (by name)")

# The image and its user: the ones scripts/docker/Dockerfile and docker-compose.yml make.
dockerfile = open(os.path.join(SRC, "scripts/docker/Dockerfile")).read()
m = re.search(r"useradd[^\n]*--uid (\d+)", dockerfile)
uid = int(m.group(1)) if m else None
compose_image = re.search(r"^\s+image: (\S+)", open(os.path.join(SRC, "docker-compose.yml")).read(),
                          re.M)
tspec = tpl.get("template", {}).get("spec", {})
for what, ps in (("gateway", spec), ("backend", tspec)):
    sc = ps.get("securityContext", {})
    check(sc.get("runAsNonRoot") is True and sc.get("runAsUser") == uid and uid,
          f"{what} pods run as non-root uid {sc.get('runAsUser')} (the image's: {uid})")
    for cc in ps.get("containers", []):
        check(cc.get("image") == (compose_image.group(1) if compose_image else None),
              f"{what} image {cc.get('image')} is the one docker-compose.yml builds")
        check(cc.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
              f"{what}: no privilege escalation")

# Settings: the ConfigMap's variables, loaded by the real gateway as the pod would run it.
data = cm.get("data", {})
check(all(k.startswith("FRAMEGATE_") for k in data), f"ConfigMap keys are FRAMEGATE_ ({list(data)})")
framegate = os.path.join(fg.BIN, "framegate")
if check(os.access(framegate, os.X_OK), f"{framegate} is built"):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/framegate",
           "FRAMEGATE_CACHE": "/var/lib/framegate/cache", **data}
    r = subprocess.run([framegate, "--config", os.path.join(SRC, "config/framegate.conf"),
                        "--print-config"], capture_output=True, text=True, timeout=30, env=env)
    check(r.returncode == 0, f"the gateway accepts the ConfigMap's settings {r.stderr.strip()[:300]}")
    eff = dict(l.split(" = ", 1) for l in r.stdout.splitlines()
               if " = " in l and not l.startswith(("#", "[")))
    check(eff.get("max_backends") == data.get("FRAMEGATE_MAX_BACKENDS"),
          f"max_backends comes from the ConfigMap ({eff.get('max_backends')})")
    grace_ms = eff.get("shutdown_grace_ms", "")
    m = re.match(r"(\d+)(ms|s)?$", grace_ms)
    grace_s = int(m.group(1)) / (1000 if m.group(2) in (None, "ms") else 1) if m else None
    tgp = spec.get("terminationGracePeriodSeconds", 30)
    check(grace_s is not None and grace_s < tgp,
          f"terminationGracePeriodSeconds {tgp} > shutdown_grace_ms ({grace_ms})")

# The backend template: its files are the image's models, and the real backend serves with
# its arguments (the model paths moved to this machine's cache, the port to a free loopback
# one): it loads the model, warms up and listens.
bc = (tspec.get("containers") or [{}])[0]
args = bc.get("args", [])
check(bc.get("command") == ["framegate-backend"], "the backend template runs framegate-backend")
opts = dict(zip(args[::2], args[1::2]))
image_models = "/var/lib/framegate/cache/models/"
for k in ("--cfg", "--weights", "--names"):
    check(opts.get(k, "").startswith(image_models),
          f"backend {k} is in the image's model cache ({opts.get(k)})")
lport = re.match(r"tcp://0\.0\.0\.0:(\d+)$", opts.get("--listen", ""))
check(lport is not None and {p.get("containerPort") for p in bc.get("ports", [])}
      == {int(lport.group(1))}, f"the backend listens on its declared port ({opts.get('--listen')})")
backend = os.path.join(fg.BIN, "framegate-backend")
port = fg.free_port()
local = [a.replace(image_models, os.path.join(fg.cache_dir(), "models") + "/") for a in args]
local = [f"tcp://127.0.0.1:{port}" if a.startswith("tcp://") else a for a in local]
if check(os.access(backend, os.X_OK), f"{backend} is built"):
    proc = subprocess.Popen([backend] + local, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, preexec_fn=fg._die_with_parent)
    listening = False
    end = time.time() + 60 * fg.SLOW
    try:
        while time.time() < end and proc.poll() is None and not listening:
            with socket.socket() as sock:
                listening = sock.connect_ex(("127.0.0.1", port)) == 0
            time.sleep(0.2)
    finally:
        proc.kill()
        _, err = proc.communicate(timeout=30)
    check(listening, f"framegate-backend serves with the template's arguments "
                     f"(exit {proc.returncode}: {err.decode(errors='replace').strip()[-300:]})")

fg.finish()
