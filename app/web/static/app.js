// Silhouette Card Maker page: sign in, submit jobs, follow their progress, download PDFs.
// Plain browser JavaScript, no build step. Tokens live in sessionStorage (gone with the tab).
"use strict";

const $ = (selector) => document.querySelector(selector);
const POLL_MS = 1000;
const polling = new Map(); // job id -> timer

function tokens() {
  return { access: sessionStorage.getItem("access"), refresh: sessionStorage.getItem("refresh") };
}

function saveTokens(data) {
  if (data.access_token) sessionStorage.setItem("access", data.access_token);
  if (data.refresh_token) sessionStorage.setItem("refresh", data.refresh_token);
}

function notice(text, isError) {
  const el = $("#notice");
  el.textContent = text || "";
  el.className = isError ? "error" : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error.message || body.error.code;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// Access tokens are short-lived: on a 401, trade the refresh token for a new one once.
async function refreshAccess() {
  const { refresh } = tokens();
  if (!refresh) return false;
  const response = await fetch("/api/auth/refresh", {
    method: "POST", headers: { Authorization: `Bearer ${refresh}` },
  });
  if (!response.ok) return false;
  saveTokens(await response.json());
  return true;
}

async function api(path, options = {}, retried = false) {
  const headers = Object.assign({}, options.headers || {});
  const { access } = tokens();
  if (access) headers.Authorization = `Bearer ${access}`;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && !retried && await refreshAccess()) {
    return api(path, options, true);
  }
  if (response.status === 401) signedOut();
  return response;
}

function signedOut() {
  sessionStorage.clear();
  polling.forEach((timer) => clearTimeout(timer));
  polling.clear();
  $("#login-section").hidden = false;
  $("#app-section").hidden = true;
  $("#who").hidden = true;
}

async function signedIn() {
  const response = await api("/api/auth/me");
  if (!response.ok) { signedOut(); return; }
  const me = await response.json();
  $("#who-name").textContent = `${me.username} (${me.role})`;
  $("#who").hidden = false;
  $("#login-section").hidden = true;
  $("#app-section").hidden = false;
  loadJobs();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  if (!response.ok) { notice(await errorText(response), true); return; }
  saveTokens(await response.json());
  event.target.reset();
  notice("");
  signedIn();
});

$("#logout").addEventListener("click", signedOut);

// Empty optional fields are left out so the server applies its defaults.
function formWithoutBlanks(formElement) {
  const data = new FormData();
  for (const [key, value] of new FormData(formElement).entries()) {
    if (value instanceof File) {
      if (value.name) data.append(key, value); // an empty file input still sends a nameless File
    } else if (String(value).trim() !== "") {
      data.append(key, value);
    }
  }
  return data;
}

async function submitJob(path, body, isJson) {
  notice("Uploading…");
  const options = { method: "POST", body };
  if (isJson) options.headers = { "Content-Type": "application/json" };
  const response = await api(path, options);
  if (response.status !== 202) { notice(await errorText(response), true); return; }
  const job = await response.json();
  notice(`Job ${job.id} queued.`);
  await loadJobs();
  follow(job.id);
}

$("#sheets-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = formWithoutBlanks(event.target);
  if (!event.target.only_fronts.checked) data.set("only_fronts", "false");
  submitJob("/api/jobs/sheets", data);
});

$("#offset-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitJob("/api/jobs/offset", formWithoutBlanks(event.target));
});

$("#calibration-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const paper = new FormData(event.target).get("paper_size");
  submitJob("/api/jobs/calibration", JSON.stringify({ paper_size: paper }), true);
});

$("#refresh-jobs").addEventListener("click", loadJobs);

function row(job) {
  let tr = document.getElementById(`job-${job.id}`);
  if (!tr) {
    tr = document.createElement("tr");
    tr.id = `job-${job.id}`;
    for (let i = 0; i < 6; i += 1) tr.appendChild(document.createElement("td"));
    $("#jobs tbody").prepend(tr);
  }
  const cells = tr.children;
  cells[0].textContent = job.created_at ? new Date(job.created_at).toLocaleString() : "";
  cells[1].textContent = job.kind;
  cells[2].textContent = job.status;
  cells[2].className = `status-${job.status}`;
  cells[3].replaceChildren(Object.assign(document.createElement("progress"),
    { max: 1, value: job.progress || 0 }));
  cells[4].textContent = job.status === "failed" ? (job.error || job.message || "") : (job.message || "");
  cells[5].replaceChildren();
  if (job.status === "succeeded" && job.result_url) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Download PDF";
    button.addEventListener("click", () => download(job));
    cells[5].appendChild(button);
  }
  if (job.kind === "sheets") {
    for (const format of ["svg", "dxf"]) {
      const cut = Object.assign(document.createElement("button"), { type: "button", textContent: `Cut file (${format.toUpperCase()})` });
      cut.addEventListener("click", () => download({ ...job, kind: "cutfile", result_url: `/api/jobs/${encodeURIComponent(job.id)}/cutfile?format=${format}` }, format));
      cells[5].appendChild(cut);
    }
  }
  return tr;
}

async function loadJobs() {
  const response = await api("/api/jobs");
  if (!response.ok) return;
  const body = await response.json();
  const jobs = Array.isArray(body) ? body : (body.jobs || []);
  jobs.slice().reverse().forEach((job) => {
    row(job);
    if (job.status === "queued" || job.status === "running") follow(job.id);
  });
}

function follow(id) {
  if (polling.has(id)) return;
  const tick = async () => {
    const response = await api(`/api/jobs/${encodeURIComponent(id)}`);
    if (!response.ok) { polling.delete(id); return; }
    const job = await response.json();
    row(job);
    if (job.status === "queued" || job.status === "running") {
      polling.set(id, setTimeout(tick, POLL_MS));
    } else {
      polling.delete(id);
      notice(job.status === "succeeded" ? `Job ${id} is ready.` : `Job ${id} failed: ${job.error || ""}`,
        job.status !== "succeeded");
    }
  };
  polling.set(id, setTimeout(tick, 0));
}

// The result needs the bearer token, so fetch it and hand the browser a blob URL.
async function download(job, extension = "pdf") {
  const response = await api(job.result_url);
  if (!response.ok) { notice(await errorText(response), true); return; }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: `${job.kind}-${job.id}.${extension}` });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

if (tokens().access) signedIn(); else signedOut();
