"""The dashboard: static pages served by the API, drawing from ``/api/v1`` in the browser.

``/`` lists jobs (live state) and has a form that submits a job from a space's schema;
``/jobs/{id}`` shows live progress and the Pareto front drawn with Plotly (axes selectable,
constraint lines, dominated trials greyed; a click opens the architecture);
``/architectures/{id}`` shows its choices, its metrics in the job, its latency per Target and the import snippet.
Plotly is the ``plotly.min.js`` of the installed plotly package: no CDN.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

__all__ = ["dashboard_router"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f2937;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 20px;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}
th,td{padding:6px 8px;border-bottom:1px solid #e5e7eb;text-align:left;font-size:14px}
.state-running{color:#2563eb}.state-completed{color:#059669}.state-failed{color:#dc2626}.state-cancelled{color:#6b7280}
.card{background:#fff;padding:12px 16px;margin:12px 0;border:1px solid #e5e7eb;border-radius:6px}
textarea{width:100%;font-family:monospace}pre{background:#111827;color:#e5e7eb;padding:10px;overflow:auto}
.err{color:#dc2626}label{margin-right:12px}
"""


def _page(title: str, body: str, script: str) -> HTMLResponse:
    return HTMLResponse(f"""<!doctype html><html><head><meta charset="utf-8"><title>{title} - nas-service</title>
<style>{_STYLE}</style></head><body><header><a href="/">nas-service</a></header><main>{body}</main>
<script>
const API = "/api/v1";
const token = () => localStorage.getItem("nas_token") || "";
async function api(path, opts = {{}}) {{
  const headers = Object.assign({{"content-type": "application/json"}}, opts.headers || {{}});
  if (token()) headers["authorization"] = "Bearer " + token();
  const r = await fetch(API + path, Object.assign({{}}, opts, {{headers}}));
  const body = await r.json().catch(() => ({{}}));
  if (!r.ok) throw new Error(body.detail || r.statusText);
  return body;
}}
const esc = s => String(s).replace(/[&<>"]/g, c => ({{"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}})[c]);
{script}
</script></body></html>""")


_INDEX = """
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>name</th><th>space</th><th>strategy</th><th>state</th>
<th>evaluations</th><th>hypervolume</th><th>created</th></tr></thead><tbody></tbody></table>
<div class="card"><h3>Submit a job</h3>
<label>space <select id="space"></select></label><label>token <input id="token" size="50"
 placeholder="a token with the read and write scopes (it is sent with every request)"></label>
<p>Spec (JSON, filled from the space's schema):</p><textarea id="spec" rows="14"></textarea>
<p><button id="submit">Submit</button> <span id="msg"></span></p></div>
"""

_INDEX_JS = """
document.getElementById("token").value = token();
document.getElementById("token").onchange = e => localStorage.setItem("nas_token", e.target.value.trim());
async function loadJobs() {
  try {
    const jobs = await api("/jobs?limit=100");
    document.querySelector("#jobs tbody").innerHTML = jobs.items.map(j => `<tr>
      <td><a href="/jobs/${j.id}">${j.id}</a></td><td>${esc(j.name || "")}</td><td>${j.space}</td>
      <td>${j.strategy}</td><td class="state-${j.state}">${j.state}</td><td>${j.n_evaluations}/${j.budget}</td>
      <td>${j.hypervolume == null ? "-" : j.hypervolume.toFixed(4)}</td><td>${j.created_at.slice(0, 19)}</td></tr>`).join("");
  } catch (e) { document.querySelector("#jobs tbody").innerHTML = `<tr><td class="err">${esc(e.message)}</td></tr>`; }
}
let spaces = {};
function fill() {
  const s = spaces[document.getElementById("space").value];
  const lat = s.metrics.latency_ms;
  const config = Object.fromEntries(Object.entries(s.config_options).map(([k, o]) => [k, o.default]));
  const objectives = Object.entries(s.metrics).slice(0, 2).map(([name, m]) =>
    m.devices.length ? {name, device: m.devices[0]} : {name});
  const spec = {name: "from the dashboard", space: Object.assign({name: s.name}, config), objectives,
    strategy: {name: "random", batch_size: 10}, budget: {evaluations: 20}, seed: 0, execution: {backend: "inline"}};
  document.getElementById("spec").value = JSON.stringify(spec, null, 2);
}
(async () => {
  spaces = Object.fromEntries((await api("/spaces")).items.map(s => [s.name, s]));
  const sel = document.getElementById("space");
  sel.innerHTML = Object.keys(spaces).map(n => `<option>${n}</option>`).join("");
  sel.onchange = fill; fill();
})();
document.getElementById("submit").onclick = async () => {
  const msg = document.getElementById("msg");
  try {
    localStorage.setItem("nas_token", document.getElementById("token").value.trim());
    const job = await api("/jobs", {method: "POST", body: document.getElementById("spec").value});
    msg.innerHTML = `queued: <a id="new-job" href="/jobs/${job.id}">${job.id}</a>`; loadJobs();
  } catch (e) { msg.innerHTML = `<span class="err">${esc(e.message)}</span>`; }
};
loadJobs(); setInterval(loadJobs, 2000);
"""

_JOB = """
<h2>Job <span id="jid"></span> <small id="state"></small></h2>
<div class="card"><div id="progress"></div>
<label>x <select id="ax"></select></label><label>y <select id="ay"></select></label>
<button id="cancel">Cancel</button> <button id="resume">Resume</button> <span id="msg"></span></div>
<div class="card err" id="failure" hidden></div>
<div class="card"><div id="plot" style="height:480px"></div></div>
<div class="card"><h3>Log</h3><pre id="log"></pre></div>
"""

_JOB_JS = """
const jid = location.pathname.split("/").pop();
document.getElementById("jid").textContent = jid;
let keys = [], lastTrials = -1;
const all = [];  // the job's complete trials fetched so far, in trial order
async function refresh() {
  const job = await api(`/jobs/${jid}`);
  document.getElementById("state").innerHTML = `<span class="state-${job.state}">${job.state}</span>`;
  const failure = document.getElementById("failure");  // why a job failed, above everything it kept
  failure.hidden = !(job.state === "failed" && job.error);
  failure.textContent = failure.hidden ? "" :
    `Failed: ${job.error}. The trials evaluated before the failure are kept; the log below has the traceback.`;
  document.getElementById("progress").textContent =
    `${job.n_evaluations}/${job.budget} evaluations, ${job.n_trials} trials, round ${job.rounds}, ` +
    `hypervolume ${job.hypervolume == null ? "-" : job.hypervolume.toFixed(4)}`;
  if (job.n_trials !== lastTrials) { lastTrials = job.n_trials; await draw(); }
  document.getElementById("log").textContent = (await api(`/jobs/${jid}/logs`)).items
    .map(l => `[${l.level}] ${l.message}`).join("\\n");
  if (job.state === "running" || job.state === "queued") setTimeout(refresh, 1500);
}
async function draw() {
  const front = await api(`/jobs/${jid}/pareto`);
  if (!keys.length) {
    keys = front.objectives.map(o => o.key).concat(front.constraints.map(c => c.key)
      .filter(k => !front.objectives.some(o => o.key === k)));
    for (const [id, i] of [["ax", 1], ["ay", 0]]) {
      const sel = document.getElementById(id);
      sel.innerHTML = keys.map(k => `<option>${k}</option>`).join("");
      sel.value = keys[Math.min(i, keys.length - 1)]; sel.onchange = draw;
    }
  }
  const x = document.getElementById("ax").value, y = document.getElementById("ay").value;
  // trials are final once written and numbered in order, so the complete ones only grow at the
  // end: fetch from where the last draw stopped instead of re-reading the whole job each round
  for (;;) {
    const page = await api(`/jobs/${jid}/trials?state=complete&limit=1000&offset=${all.length}`);
    all.push(...page.items); if (all.length >= page.total || !page.items.length) break;
  }
  const onFront = new Set(front.items.map(t => t.number));
  const pt = (t, k) => (t.metrics || {})[k];
  const trace = (ts, name, color) => ({x: ts.map(t => pt(t, x)), y: ts.map(t => pt(t, y)), mode: "markers",
    type: "scatter", name, marker: {color, size: name === "Pareto front" ? 10 : 7},
    customdata: ts.map(t => t.arch_id), text: ts.map(t => `trial ${t.number}`)});
  const dominated = all.filter(t => !onFront.has(t.number));
  const shapes = front.constraints.filter(c => c.key === x || c.key === y).flatMap(c =>
    [c.min, c.max].filter(v => v != null).map(v => c.key === x
      ? {type: "line", x0: v, x1: v, yref: "paper", y0: 0, y1: 1, line: {dash: "dash", color: "#dc2626"}}
      : {type: "line", y0: v, y1: v, xref: "paper", x0: 0, x1: 1, line: {dash: "dash", color: "#dc2626"}}));
  const el = document.getElementById("plot");
  Plotly.react(el, [trace(dominated, "dominated", "#cbd5e1"), trace(front.items, "Pareto front", "#2563eb")],
    {xaxis: {title: {text: x}}, yaxis: {title: {text: y}}, shapes, margin: {t: 20}, hovermode: "closest"});
  el.removeAllListeners && el.removeAllListeners("plotly_click");
  el.on("plotly_click", d => { location.href = `/architectures/${d.points[0].customdata}?job=${jid}`; });
  el.dataset.ready = String(front.items.length);
}
for (const [id, verb] of [["cancel", "cancel"], ["resume", "resume"]])
  document.getElementById(id).onclick = async () => {
    try { await api(`/jobs/${jid}/${verb}`, {method: "POST"}); refresh(); }
    catch (e) { document.getElementById("msg").innerHTML = `<span class="err">${esc(e.message)}</span>`; }
  };
refresh();
"""

_ARCH = """
<h2>Architecture <span id="aid"></span></h2>
<div class="card"><h3>Choices</h3><table id="choices"></table></div>
<div class="card"><h3>Metrics</h3><table id="metrics"></table></div>
<div class="card"><h3>Latency per Target</h3><table id="latency"></table></div>
<div class="card"><h3>Import</h3><pre id="snippet"></pre></div>
"""

_ARCH_JS = """
const aid = location.pathname.split("/").pop();
const job = new URLSearchParams(location.search).get("job");
document.getElementById("aid").textContent = aid;
(async () => {
  const a = await api(`/architectures/${aid}` + (job ? `?job=${encodeURIComponent(job)}` : ""));
  document.getElementById("choices").innerHTML = Object.entries(a.params)
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("");
  document.getElementById("snippet").textContent = a.snippet;
  const t = a.trial;
  if (t) {
    document.getElementById("metrics").innerHTML = Object.entries(t.metrics || {})
      .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join("") +
      `<tr><th>trial</th><td>${t.number} of job <a href="/jobs/${esc(job)}">${esc(job)}</a></td></tr>`;
  }
  // measured on a device (agents, profiled jobs), then the job's latency metrics (tables, models)
  const rows = a.latency.map(m => `<tr><th>${esc(m.name)}</th><td>${m.median_ms === null
      ? `<span class="err">failed: ${esc((m.error || "").slice(0, 120))}</span>`
      : `${m.median_ms.toFixed(3)} ms (p90 ${m.p90_ms.toFixed(3)})`}</td><td>${esc(m.device)} / ${esc(m.backend)}, measured</td></tr>`);
  for (const [k, v] of Object.entries((t && t.metrics) || {}))
    if (k.startsWith("latency_ms")) rows.push(`<tr><th>${esc(k.split("@")[1] || "this machine")}</th><td>${v.toFixed(3)} ms</td><td>${esc(k)}, in the job</td></tr>`);
  document.getElementById("latency").innerHTML = rows.join("") || "<tr><td>not measured on any Target yet</td></tr>";
})();
"""


@cache
def _plotly_js() -> bytes:
    import plotly

    return (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_bytes()


def dashboard_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    def index() -> HTMLResponse:
        return _page("jobs", _INDEX, _INDEX_JS)

    @r.get("/jobs/{job_id}")
    def job(job_id: str) -> HTMLResponse:
        return _page(f"job {job_id}", _JOB + '<script src="/static/plotly.min.js"></script>', _JOB_JS)

    @r.get("/architectures/{arch_id}")
    def arch(arch_id: str) -> HTMLResponse:
        return _page(f"architecture {arch_id}", _ARCH, _ARCH_JS)

    @r.get("/static/plotly.min.js")
    def plotly_js() -> Response:
        try:
            body = _plotly_js()
        except (ImportError, OSError):
            return Response("plotly is not installed: pip install 'nas-service[server]'", status_code=404)
        return Response(body, media_type="application/javascript", headers={"Cache-Control": "max-age=86400"})

    return r
