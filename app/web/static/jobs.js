// The workshop's job list: ids, progress, grouped warnings, thumbnails, actions.
"use strict";

const ACTIVE = new Set(["queued", "running"]);

function statusText(job) {
  if (job.cancelled) return "cancelled";
  return job.status;
}

function jobItem(job) {
  const id = `job-${job.id}`;
  let item = document.getElementById(id);
  if (!item) {
    item = SCM.el("li", { id, class: "job", "data-job-id": job.id });
    SCM.$("#jobs").prepend(item);
  }
  item.dataset.status = statusText(job);
  const title = job.label ? `${job.kind}: ${job.label}` : job.kind;
  const created = job.created_at ? new Date(job.created_at).toLocaleString() : "";
  item.replaceChildren(...[
    SCM.el("h3", { text: `${title} · ${statusText(job)}` }),
    SCM.el("p", { class: "job-id" }, "Id ", SCM.el("code", { text: job.id }), " ",
      SCM.el("button", { type: "button", class: "copy", "aria-label": `Copy job id ${job.id}`,
        text: "Copy id", onclick: () => SCM.copy(job.id) }), ` · ${created}`),
    SCM.el("progress", { max: "1", value: String(job.progress || 0), "aria-label": `Progress of job ${job.id}` }),
    SCM.el("p", { class: "summary", text: job.status === "failed" ? (job.error || "failed") : (job.summary || job.message || "") }),
    job.warnings && job.warnings.length
      ? SCM.el("ul", { class: "warnings", "aria-label": "Warnings" }, job.warnings.map((w) => SCM.el("li", { text: w })))
      : null,
    SCM.el("div", { class: "job-thumbs" }),
    SCM.el("div", { class: "buttons" }, jobButtons(job)),
  ].filter(Boolean));
  if (job.thumbnails) showThumbnails(item, job);
  return item;
}

function jobButtons(job) {
  const buttons = [];
  if (job.result_url) {
    buttons.push(SCM.el("button", { type: "button", class: "download", text: `Download ${job.download_name}`, onclick: () => download(job) }));
    if (job.kind === "sheets") buttons.push(...cutFileButtons(job));
  }
  if (ACTIVE.has(job.status)) {
    buttons.push(SCM.el("button", { type: "button", class: "cancel", text: "Cancel", onclick: () => cancelJob(job) }));
  }
  buttons.push(SCM.el("button", { type: "button", class: "delete", text: "Delete", onclick: () => deleteJob(job) }));
  return buttons;
}

// The cut lines of the layout this job used, for the cutter's software.
function cutFileButtons(job) {
  return ["svg", "dxf"].map((format) => SCM.el("button", {
    type: "button", class: "cutfile", text: `Cut file (${format.toUpperCase()})`,
    onclick: () => download({
      result_url: `/api/jobs/${encodeURIComponent(job.id)}/cutfile?format=${format}`,
      download_name: `${(job.download_name || job.id).replace(/\.pdf$/i, "")}-cut.${format}`,
    }),
  }));
}

const thumbCache = new Map(); // "id/side" -> object URL

async function showThumbnails(item, job) {
  const box = item.querySelector(".job-thumbs");
  for (const side of ["front", "back"]) {
    const url = job.thumbnails[side];
    if (!url) continue;
    const key = `${job.id}/${side}`;
    if (!thumbCache.has(key)) {
      const response = await SCM.api(url);
      if (!response.ok) continue;
      thumbCache.set(key, URL.createObjectURL(await response.blob()));
    }
    box.append(SCM.el("figure", { class: "thumb" },
      SCM.el("img", { src: thumbCache.get(key), alt: `First ${side} page of job ${job.id}`, class: `result-${side}` }),
      SCM.el("figcaption", { text: `${side} page` })));
  }
}

let pollTimer = null;

async function loadJobs() {
  const response = await SCM.api("/api/jobs?limit=50");
  if (!response.ok) return;
  const { jobs } = await response.json();
  const seen = new Set(jobs.map((job) => `job-${job.id}`));
  document.querySelectorAll("#jobs > li").forEach((li) => { if (!seen.has(li.id)) li.remove(); });
  jobs.slice().reverse().forEach(jobItem);
  clearTimeout(pollTimer);
  if (jobs.some((job) => ACTIVE.has(job.status))) pollTimer = setTimeout(loadJobs, POLL_MS);
}

async function cancelJob(job) {
  const response = await SCM.api(`/api/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
  SCM.notice(response.ok ? `Job ${job.id} cancelled.` : await SCM.errorText(response), !response.ok);
  await loadJobs();
}

async function deleteJob(job) {
  if (!window.confirm(`Delete job ${job.id} and its files?`)) return;
  const response = await SCM.api(`/api/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
  SCM.notice(response.ok ? `Job ${job.id} deleted.` : await SCM.errorText(response), !response.ok);
  await loadJobs();
}

// The result needs the bearer token, so fetch it and hand the browser a blob URL.
async function download(job) {
  const response = await SCM.api(job.result_url);
  if (!response.ok) { SCM.notice(await SCM.errorText(response), true); return; }
  const url = URL.createObjectURL(await response.blob());
  const link = SCM.el("a", { href: url, download: job.download_name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function stopJobs() {
  clearTimeout(pollTimer);
  SCM.$("#jobs").replaceChildren();
}
