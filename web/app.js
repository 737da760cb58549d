// framegate's page: upload, per-job progress, results, and a live view drawn by hand.
"use strict";
const $ = (id) => document.getElementById(id);
// With tokens_file set, the page is opened as /?token=T: every call then carries T.
const TOKEN = new URLSearchParams(location.search).get("token");
const plainFetch = window.fetch.bind(window);
window.fetch = (url, opts = {}) => TOKEN
  ? plainFetch(url, { ...opts, headers: { ...(opts.headers || {}), Authorization: `Bearer ${TOKEN}` } })
  : plainFetch(url, opts);
const jobs = new Map(); // id -> {images, done, failed, state, shown}
let results = [];       // {job, index, name, label}

function jobRow(id) {
  let row = document.querySelector(`[data-job="${id}"]`);
  if (!row) {
    row = document.createElement("div");
    row.className = "job";
    row.dataset.job = id;
    row.innerHTML = `<div class="txt"></div><div class="bar"><div></div></div>`;
    $("jobs").prepend(row);
  }
  return row;
}

async function upload(files) {
  if (!files.length) return;
  const fd = new FormData();
  for (const f of files) fd.append("files", f, f.name);
  const r = await fetch("/v1/jobs", { method: "POST", body: fd });
  const j = await r.json();
  if (r.status !== 202) { alert("upload refused: " + (j.error ? j.error.message : r.status)); return; }
  jobs.set(j.id, { images: j.images, done: 0, failed: 0, state: "queued", shown: false });
  poll();
}

async function poll() {
  for (const [id, j] of jobs) {
    if (j.shown) continue;
    const r = await fetch(`/v1/jobs/${id}?limit=0`);
    if (r.status !== 200) { jobs.delete(id); continue; }
    const s = await r.json();
    Object.assign(j, { state: s.state, done: s.counts.done, failed: s.counts.failed });
    const row = jobRow(id);
    const fin = s.counts.done + s.counts.failed;
    row.querySelector(".txt").textContent =
      `job ${id}: ${s.state}, ${fin}/${s.images} (${s.counts.failed} failed) in ${s.elapsed_s.toFixed(1)} s`;
    row.querySelector(".bar > div").style.width = (100 * fin / s.images) + "%";
    if (s.state === "done" || s.state === "cancelled") { j.shown = true; await loadResults(id); }
  }
}

async function loadResults(id) {
  let off = 0;
  for (;;) {
    const s = await (await fetch(`/v1/jobs/${id}?offset=${off}&limit=500`)).json();
    for (const x of s.results)
      if (x.status !== "pending") results.push({ job: id, index: x.index, name: x.name, label: x.label });
    if (s.next_offset === undefined) break;
    off = s.next_offset;
  }
  render();
}

function render() {
  const grid = $("grid");
  grid.textContent = "";
  for (const x of results) {
    const f = document.createElement("figure");
    f.className = "thumb";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = x.name;
    img.src = `/v1/jobs/${x.job}/images/${x.index}`;
    const c = document.createElement("figcaption");
    c.textContent = `${x.name}: ${x.label}`;
    f.append(img, c);
    grid.append(f);
  }
  $("list").textContent = results.map((x) => `${x.name},${x.label}`).join("\n");
  $("count").textContent = String(results.length);
}

async function reset() {
  if (!confirm("Reset: delete every job, its images and its results?")) return;
  let r = await fetch("/v1/reset", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
  if (r.status === 403) {
    const token = prompt("Admin token");
    if (token === null) return;
    r = await fetch("/v1/reset", { method: "POST", headers: { "Content-Type": "application/json" },
                                    body: JSON.stringify({ token }) });
  }
  if (r.status !== 200) { alert("reset refused (" + r.status + ")"); return; }
  jobs.clear();
  results = [];
  $("jobs").textContent = "";
  render();
}

// ---- live view: /v1/backends and /metrics every second, the last 5 minutes ----
const HIST = 300;
const series = { backends: [], rps: [], queue: [], p50: [], p95: [], fail: [] };
let prev = null;

function parseMetrics(text) {
  const m = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    const head = line.slice(0, sp), v = parseFloat(line.slice(sp + 1));
    const name = head.split("{")[0];
    if (!m.has(name)) m.set(name, []);
    m.get(name).push({ labels: head, v });
  }
  return m;
}
const sum = (m, name, pred) => (m.get(name) || []).filter((x) => !pred || pred(x.labels)).reduce((a, x) => a + x.v, 0);

// Quantile from the histogram's bucket deltas over the last second.
function quantile(bk, q) {
  const tot = bk.length ? bk[bk.length - 1][1] : 0;
  if (tot <= 0) return 0;
  for (const [le, c] of bk) if (c >= q * tot) return le === Infinity ? NaN : le * 1000;
  return 0;
}
function buckets(m) {
  const by = new Map();
  // inference time of every frame, live or batch
  for (const x of m.get("framegate_inference_seconds_bucket") || []) {
    const le = /le="([^"]+)"/.exec(x.labels)[1];
    const k = le === "+Inf" ? Infinity : parseFloat(le);
    by.set(k, (by.get(k) || 0) + x.v);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

function push(name, v) { const s = series[name]; s.push(v); if (s.length > HIST) s.shift(); }

function draw(id, lines, colors) {
  const cv = $(id), ctx = cv.getContext("2d");
  const w = cv.width, h = cv.height;
  ctx.clearRect(0, 0, w, h);
  let max = 1;
  for (const l of lines) for (const v of l) if (isFinite(v) && v > max) max = v;
  ctx.fillStyle = "#8a93a6"; ctx.font = "10px sans-serif";
  ctx.fillText(String(Math.round(max * 10) / 10), 2, 10);
  lines.forEach((l, i) => {
    ctx.strokeStyle = colors[i]; ctx.lineWidth = 1.5; ctx.beginPath();
    l.forEach((v, x) => {
      const px = w - (l.length - 1 - x) * (w / HIST), py = h - 2 - (isFinite(v) ? v : 0) / max * (h - 14);
      x ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
  });
}

async function live() {
  try {
    const b = await (await fetch("/v1/backends")).json();
    const box = $("backends");
    box.textContent = "";
    let ready = 0;
    const per = new Map(); // model -> {state: n}
    for (const p of b.models || []) per.set(p.model, {});
    for (const x of b.backends || []) {
      const st = per.get(x.model || "app") || {};
      st[x.state] = (st[x.state] || 0) + 1;
      per.set(x.model || "app", st);
      if (x.state === "ready") ready++;
    }
    for (const [model, st] of per) {
      const d = document.createElement("div");
      d.className = "model";
      d.textContent = `${model}: ` + (Object.entries(st).map(([k, v]) => `${v} ${k}`).join(", ") || "no backends");
      box.append(d);
    }
    const m = parseMetrics(await (await fetch("/metrics")).text());
    const now = { t: Date.now(), req: sum(m, "framegate_requests_total", (l) => /route="detect"/.test(l)),
                  fail: sum(m, "framegate_requests_total", (l) => /status="5/.test(l)),
                  done: sum(m, "framegate_backend_served"),
                  bfail: sum(m, "framegate_backend_failures"), bk: buckets(m) };
    push("backends", ready);
    push("queue", sum(m, "framegate_queue_depth"));
    if (prev) {
      const dt = (now.t - prev.t) / 1000;
      // frames served by backends (detect requests and batch frames alike)
      push("rps", Math.max(0, (now.done - prev.done) / dt));
      push("fail", Math.max(0, (now.fail - prev.fail + now.bfail - prev.bfail) / dt));
      const d = now.bk.map(([le, c], i) => [le, c - (prev.bk[i] ? prev.bk[i][1] : 0)]);
      push("p50", quantile(d, 0.5)); push("p95", quantile(d, 0.95));
    }
    prev = now;
    draw("c-backends", [series.backends], ["#3a6ff7"]);
    draw("c-rps", [series.rps], ["#2fa56a"]);
    draw("c-queue", [series.queue], ["#c78a16"]);
    draw("c-lat", [series.p50, series.p95], ["#3a6ff7", "#d64545"]);
    draw("c-fail", [series.fail], ["#d64545"]);
    $("status").textContent = `${ready} backend${ready === 1 ? "" : "s"} ready`;
    $("c-backends").dataset.ready = String(ready);
  } catch (e) {
    $("status").textContent = "gateway unreachable";
  }
}

$("upload-form").addEventListener("submit", (e) => { e.preventDefault(); upload([...$("files").files]); });
$("reset").addEventListener("click", reset);
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); upload([...e.dataTransfer.files]); });
setInterval(() => { poll(); live(); }, 1000);
live();
// Jobs already there (a reload, or another tab): shown as well.
fetch("/v1/jobs").then((r) => r.json()).then((l) => {
  for (const j of l.jobs) jobs.set(j.id, { images: j.images, state: j.state, shown: false });
  poll();
});
