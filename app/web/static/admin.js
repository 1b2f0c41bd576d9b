// The operator's dashboard: workers, queues, broker, logs and recent jobs, polled every 2 s.
"use strict";

const REFRESH_MS = 2000;
const LOG_BYTES = 8192;
let refreshTimer = null;
let busy = false;

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function megabytes(bytes) {
  return bytes ? `${(bytes / 1048576).toFixed(1)} MB` : "–";
}

function restartsText(worker) {
  const reasons = Object.entries(worker.restarts_by_reason || {}).filter(([, n]) => n > 0);
  const detail = reasons.map(([reason, n]) => `${reason} ${n}`).join(", ");
  return detail ? `${worker.restarts} (${detail})` : String(worker.restarts || 0);
}

async function control(path, body, what) {
  setBusy(true);
  SCM.notice(`${what}…`);
  const response = await SCM.api(path, { method: "POST", json: body || {} });
  setBusy(false);
  SCM.notice(response.ok ? `${what}: done.` : `${what}: ${await SCM.errorText(response)}`, !response.ok);
  refresh();
}

function setBusy(value) {
  busy = value;
  document.querySelectorAll("#dashboard button").forEach((b) => { b.disabled = value; });
}

// The first sentence in the table; the log lines the manager attached on request.
const openErrors = new Set(); // workers whose error details stay open across refreshes

function lastError(name, text) {
  if (!text) return "";
  const [head, ...rest] = text.split(/; log tail: |\n/);
  if (!rest.length) return head;
  const details = SCM.el("details", { open: openErrors.has(name) },
    SCM.el("summary", { text: head }), SCM.el("pre", { text: rest.join("\n") }));
  details.addEventListener("toggle", () => {
    if (details.open) openErrors.add(name); else openErrors.delete(name);
  });
  return details;
}

function workerRow(worker) {
  const e = SCM.el;
  const queue = worker.queue;
  return e("tr", { "data-worker": worker.name, "data-queue": queue || "", "data-pid": worker.pid || "" },
    e("th", { scope: "row", text: worker.name }),
    e("td", { text: queue || "–" }),
    e("td", { class: `state state-${worker.state}`, text: worker.state }),
    e("td", { class: "pid", text: worker.pid || "–" }),
    e("td", { text: duration(worker.uptime) }),
    e("td", { class: "restarts", text: restartsText(worker) }),
    e("td", { text: megabytes(worker.memory_bytes || worker.rss_bytes) }),
    e("td", { text: worker.cpu_percent === null || worker.cpu_percent === undefined ? "–" : `${worker.cpu_percent.toFixed(0)} %` }),
    e("td", { text: worker.responsive === null || worker.responsive === undefined ? "–" : (worker.responsive ? "yes" : "no") }),
    e("td", { class: "last-error" }, lastError(worker.name, worker.last_error)),
    e("td", {}, queue ? e("button", { type: "button", class: "restart-queue", disabled: busy,
      "aria-label": `Restart the ${queue} worker`, text: "Restart",
      onclick: () => control("/api/celery/restart", { queue }, `Restarting ${queue}`) }) : null));
}

function queueRow(name, depth) {
  const e = SCM.el;
  return e("tr", { "data-queue": name },
    e("th", { scope: "row", text: name }),
    e("td", { class: "depth", text: depth === null || depth === undefined ? "unknown" : String(depth) }),
    e("td", {}, e("button", { type: "button", class: "purge", disabled: busy, "aria-label": `Purge queue ${name}`, text: "Purge",
      onclick: () => {
        if (window.confirm(`Purge every waiting message of queue ${name}? Their jobs fail.`)) {
          control("/api/celery/purge", { queues: [name] }, `Purging ${name}`);
        }
      } })));
}

function renderStatus(status) {
  const broker = status.broker || {};
  const manager = status.manager || {};
  SCM.$("#mode").textContent = status.mode + (manager.threads_reason ? ` (${manager.threads_reason})` : "");
  SCM.$("#broker").textContent = `${broker.url || "none"}: ${broker.reachable ? "reachable" : "unreachable"}`
    + (broker.embedded ? ", embedded" : "") + (broker.last_error ? ` – ${broker.last_error}` : "");
  SCM.$("#manager").textContent = manager.running
    ? `pid ${manager.pid} on this host, up ${duration(manager.uptime_seconds)}` : "not running";
  SCM.$("#updated").textContent = new Date().toLocaleTimeString();
  SCM.$("#workers tbody").replaceChildren(...(status.workers || []).map(workerRow));
  SCM.$("#queues tbody").replaceChildren(...Object.entries(status.queues || {}).map(([n, d]) => queueRow(n, d)));
  const select = SCM.$("#log-worker");
  const names = (status.workers || []).map((w) => w.name);
  if (select.options.length !== names.length || names.some((n, i) => select.options[i].value !== n)) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => SCM.el("option", { value: n, text: n, selected: n === chosen })));
  }
}

async function refreshLog() {
  const worker = SCM.$("#log-worker").value;
  if (!worker) return;
  const response = await SCM.api("/api/celery/log_tail", { method: "POST",
    json: { worker, max_bytes: LOG_BYTES } });
  const text = response.ok ? (await response.json()).text : await SCM.errorText(response);
  if (SCM.$("#log-worker").value !== worker) return; // the choice changed meanwhile
  const pre = SCM.$("#log-tail");
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = text;
  pre.dataset.worker = worker;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function renderJobs(jobs) {
  const e = SCM.el;
  SCM.$("#recent-jobs tbody").replaceChildren(...jobs.map((job) => e("tr", {},
    e("td", {}, e("code", { text: job.id })), e("td", { text: job.owner_name || job.owner }), e("td", { text: job.kind }),
    e("td", { text: job.cancelled ? "cancelled" : job.status }), e("td", { text: job.mode || "–" }),
    e("td", { text: job.created_at ? new Date(job.created_at).toLocaleString() : "" }))));
}

async function refresh() {
  clearTimeout(refreshTimer);
  if (!SCM.me || SCM.me.role !== "admin") return;
  try {
    const [status, jobs] = await Promise.all([SCM.api("/api/celery/status"), SCM.api("/api/jobs?limit=20")]);
    if (status.ok) renderStatus(await status.json());
    else SCM.notice(await SCM.errorText(status), true);
    if (jobs.ok) renderJobs((await jobs.json()).jobs);
    await refreshLog();
  } finally {
    if (SCM.me) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }
}

SCM.$("#start-all").addEventListener("click", () => control("/api/celery/start", {}, "Starting all workers"));
SCM.$("#stop-all").addEventListener("click", () => {
  if (window.confirm("Stop every worker? Jobs then run in threads in the web process.")) {
    control("/api/celery/stop", {}, "Stopping all workers");
  }
});
SCM.$("#restart-all").addEventListener("click", () => control("/api/celery/restart", {}, "Restarting all workers"));
SCM.$("#log-worker").addEventListener("change", refreshLog);

SCM.onSignedIn = async (me) => {
  const admin = me.role === "admin";
  SCM.$("#dashboard").hidden = !admin;
  SCM.$("#not-admin").hidden = admin;
  if (admin) await refresh();
};
SCM.onSignedOut = () => {
  clearTimeout(refreshTimer);
  SCM.$("#dashboard").hidden = true;
  SCM.$("#not-admin").hidden = true;
};
