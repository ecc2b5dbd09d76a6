// The cluster page: one view at a time, refreshed from /api/ whenever the manager's event stream
// (/api/events) says something happened, or ticks. Everything from the cluster is put on the page
// with textContent / DOM nodes, never parsed as HTML: job names, paths and reasons stay text.

const VIEWS = ["overview", "members", "jobs", "mounts", "logs", "plots"];
const PATHS = { "/": "overview", "/members": "members", "/jobs": "jobs", "/mounts": "mounts", "/logs": "logs",
                "/plots": "plots" };
let current = PATHS[window.location.pathname] || "overview";
let selectedMember = "";
let refreshTimer = null;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function table(headers, rows, onRow) {
  const head = el("tr", {}, ...headers.map((h) => el("th", {}, h)));
  const body = rows.map((row, i) => {
    const tr = el("tr", onRow ? { class: "clickable", onclick: () => onRow(i) } : {},
                  ...row.map((cell) => el("td", {}, cell)));
    return tr;
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function ago(unix) {
  if (!unix) return "";
  const s = Math.max(0, Date.now() / 1000 - Number(unix));
  if (s < 90) return `${Math.round(s)}s ago`;
  if (s < 5400) return `${Math.round(s / 60)}m ago`;
  return `${(s / 3600).toFixed(1)}h ago`;
}

function utc(unix) {
  return unix ? new Date(Number(unix) * 1000).toISOString().replace("T", " ").slice(0, 19) : "";
}

function bytes(n) {
  n = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    window.location.assign("/login");
    throw new Error("session ended");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function replace(container, ...nodes) {
  container.replaceChildren(...nodes);
}

// views ---------------------------------------------------------------------------------------
async function overview() {
  const s = await api("/api/overview");
  document.getElementById("cluster-id").textContent = s.cluster_id || "";
  const p = s.policy || {};
  const range = p.mode === "dynamic" ? `dynamic ${p.min_members || 0}..${p.max_members || 0}`
                                     : `static ${p.static_members || 0}`;
  const states = Object.entries(s.members_by_state || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "no members";
  const d = s.last_decision;
  const rows = [
    ["cluster", `${s.cluster_id} (${s.state})`], ["mode and range", range], ["members by state", states],
    ["usable cores", `${s.usable_cores || 0} of ${s.total_cores || 0}`], ["pending demand (tasks)", s.pending_tasks || 0],
    ["running jobs", s.running_jobs || 0],
    ["last scaler decision", d ? `${d.action} ${d.count || ""} (${ago(d.at_unix)}): ${d.reason}` : "none yet"],
    ["scaler brake", s.scaler_brake || "off"], ["operation in flight", s.operation_in_flight || "none"],
  ];
  if (s.spark && s.spark.master_url) rows.push(["spark", `${s.spark.master_url} (${s.spark.master_status || "?"})`]);
  replace(document.getElementById("view-overview"), el("h2", {}, "Overview"),
          table(["", ""], rows));
}

async function members() {
  const { members } = await api("/api/members");
  const list = members.filter((m) => m.role !== "manager");
  const rows = list.map((m) => {
    const mounts = (m.mounts || []).map((v) => `${v.mount_path}: ${v.state}`).join("; ");
    const drain = [m.drain_step, m.drain_progress].filter(Boolean).join(": ");
    return [m.member_id, m.hostname, m.state, ago(m.state_since_unix), `${(m.capacity || {}).cores || 0} cores`,
            m.running_jobs || 0, mounts, drain];
  });
  const view = document.getElementById("view-members");
  const children = [el("h2", {}, `Members (${list.length})`),
                    table(["member", "hostname", "state", "since", "capacity", "jobs", "mounts", "drain"], rows,
                          (i) => { selectedMember = list[i].member_id; members(); })];
  if (selectedMember) {
    const story = await api(`/api/members/${encodeURIComponent(selectedMember)}/story`).catch((e) => ({ error: e }));
    children.push(el("h3", {}, `Story of ${selectedMember}`));
    if (story.transitions) {
      children.push(table(["time (UTC)", "from", "to", "stimulus", "reason"],
                          story.transitions.map((t) => [utc(t.at), t.from_state, t.to_state, t.stimulus, t.reason])));
    } else {
      children.push(el("p", { class: "error" }, String(story.error)));
    }
  }
  replace(view, ...children);
}

async function jobs() {
  const j = await api("/api/jobs");
  const req = (x) => `${x.cores ?? 1} cores${x.memory_bytes ? ", " + bytes(x.memory_bytes) : ""}`;
  replace(document.getElementById("view-jobs"),
          el("h2", {}, `Running (${j.running.length})`),
          table(["job", "task", "name", "owner", "state", "requests", "host"],
                j.running.map((x) => [x.job_id, x.task_id ?? "", x.name, x.owner, x.state, req(x), x.host])),
          el("h2", {}, `Pending (${j.pending.length})`),
          table(["job", "name", "owner", "state", "tasks", "requests", "autoscaler"],
                j.pending.map((x) => [x.job_id, x.name, x.owner, x.state, x.tasks, req(x),
                                      x.ignored || "counted as demand"])),
          el("p", {}, j.at ? `as SGE showed them ${ago(j.at)}` : "SGE not observed yet"));
}

async function mounts() {
  const { mounts } = await api("/api/mounts");
  const view = document.getElementById("view-mounts");
  const children = [el("h2", {}, `Mounts (${mounts.length})`)];
  for (const m of mounts) {
    children.push(el("h3", {}, `${m.mount_path} ← ${m.source} (${m.mode})`));
    children.push(table(["node", "state", "bytes read", "errors", "message"],
                        m.nodes.map((n) => [n.member_id, n.state, bytes(n.bytes_read), n.errors, n.message])));
  }
  replace(view, ...children);
}

async function logs() {
  const q = encodeURIComponent(document.getElementById("scaler-filter").value);
  const scaler = await api(`/api/scaler-log?tail=500&q=${q}`);
  document.getElementById("scaler-log").textContent = scaler.lines.join("\n");
  const params = new URLSearchParams({
    user: document.getElementById("activity-user").value,
    action: document.getElementById("activity-action").value,
    hours: document.getElementById("activity-hours").value, limit: "500" });
  const activity = await api(`/api/activity?${params}`);
  const core = new Set(["time", "user", "action", "result"]);
  const rows = activity.entries.slice().reverse().map((e) => [e.time, e.user, e.action, e.result,
    Object.entries(e).filter(([k]) => !core.has(k)).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ")]);
  replace(document.getElementById("activity-log"), table(["time (UTC)", "user", "action", "result", "details"], rows));
}

const STATE_ORDER = ["READY", "JOINING", "REQUESTED", "DRAINING", "DRAINED", "LOST", "INTERRUPTED"];

async function plots() {
  const hours = document.getElementById("plot-hours").value;
  const h = await api(`/api/history?hours=${hours}`);
  if (!window.Plotly) return;
  const x = h.samples.map((s) => new Date(s.at * 1000));
  const traces = STATE_ORDER.map((state) => ({
    x, y: h.samples.map((s) => (s.members || {})[state] || 0), name: `members ${state}`, type: "scatter",
    mode: "lines", stackgroup: "members", line: { shape: "hv", width: 0.5 } }))
    .filter((t) => t.y.some((v) => v > 0));
  traces.push({ x, y: h.samples.map((s) => s.pending_cores), name: "pending demand (cores)", type: "scatter",
                mode: "lines", yaxis: "y2", line: { shape: "hv", color: "#d62728", width: 2 } });
  traces.push({ x, y: h.samples.map((s) => s.running_tasks), name: "running tasks", type: "scatter",
                mode: "lines", yaxis: "y2", line: { shape: "hv", color: "#2ca02c", width: 2, dash: "dot" } });
  const shapes = h.operations.map((op) => ({ type: "line", xref: "x", yref: "paper", x0: new Date(op.at * 1000),
    x1: new Date(op.at * 1000), y0: 0, y1: 1, line: { color: op.action === "scale-up" ? "#1f77b4" : "#ff7f0e",
    width: 1, dash: "dash" } }));
  const annotations = h.operations.map((op) => ({ x: new Date(op.at * 1000), y: 1, xref: "x", yref: "paper",
    text: `${op.action} ${op.count || op.members.length}`, showarrow: false, textangle: -90, xanchor: "right",
    font: { size: 10 } }));
  const layout = { margin: { t: 10, r: 60, b: 40, l: 50 }, shapes, annotations,
                   yaxis: { title: { text: "members" }, rangemode: "tozero" },
                   yaxis2: { title: { text: "cores / tasks" }, overlaying: "y", side: "right", rangemode: "tozero" },
                   legend: { orientation: "h" } };
  const config = { displayModeBar: false, responsive: true };
  window.Plotly.react("plot-members", traces, layout, config);
  const mh = h.member_hours;
  window.Plotly.react("plot-usage", [{ type: "bar", x: ["standard", "economy"], y: [mh.standard, mh.economy],
    text: [mh.standard.toFixed(2), mh.economy.toFixed(2)], textposition: "auto" }],
    { margin: { t: 10, r: 10, b: 30, l: 60 }, yaxis: { title: { text: `member-hours, last ${hours} h` } } }, config);
}

const RENDER = { overview, members, jobs, mounts, logs, plots };

async function refresh() {
  try {
    await RENDER[current]();
  } catch (err) {
    console.warn("refresh failed", err);
  }
}

function later() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 300);
}

function show(view, push) {
  current = view;
  for (const name of VIEWS) document.getElementById(`view-${name}`).hidden = name !== view;
  for (const a of document.querySelectorAll("#nav a[data-view]")) a.classList.toggle("active", a.dataset.view === view);
  if (push) window.history.pushState({ view }, "", Object.keys(PATHS).find((p) => PATHS[p] === view));
  refresh();
}

function live() {
  const badge = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => { badge.textContent = "live"; badge.className = "badge live"; });
  source.addEventListener("cluster", later);
  source.addEventListener("tick", later);
  source.onerror = () => { badge.textContent = "reconnecting"; badge.className = "badge"; };
}

async function start() {
  for (const a of document.querySelectorAll("#nav a[data-view]")) {
    a.addEventListener("click", (event) => { event.preventDefault(); show(a.dataset.view, true); });
  }
  window.addEventListener("popstate", () => show(PATHS[window.location.pathname] || "overview", false));
  for (const id of ["scaler-filter", "activity-user", "activity-action"]) {
    document.getElementById(id).addEventListener("input", later);
  }
  for (const id of ["activity-hours", "plot-hours"]) document.getElementById(id).addEventListener("change", refresh);
  const post = (path) => api(path, { method: "POST", headers: { "X-Bench-Web": "1" } });
  document.getElementById("logout").addEventListener("click", async () => {
    await post("/logout").catch(() => null);
    window.location.assign("/login");
  });
  const me = await api("/api/whoami");
  document.getElementById("whoami").textContent = `${me.user} (${me.role})`;
  const disable = document.getElementById("disable-web");
  disable.hidden = me.role !== "administrator";
  disable.addEventListener("click", async () => {
    if (window.confirm("Close the web port for everyone?")) await post("/api/web-access/disable").catch(() => null);
  });
  show(current, false);
  live();
}

start();
