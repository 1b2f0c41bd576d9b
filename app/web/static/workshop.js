// The workshop: choose a sheet, drop card images, submit, follow jobs, download.
"use strict";

const $ = SCM.$;
const el = SCM.el;
const ROLES = ["fronts", "back", "double_sided"];
const THUMBS_SHOWN = 48;
const POLL_MS = 500;
const state = {
  doc: null,
  files: { fronts: new Map(), back: new Map(), double_sided: new Map() },
  skip: new Set(),
  profile: null,
  jobs: new Map(),       // id -> last job view
  thumbs: new Map(),     // id -> true once fetched
  timer: null,
};

// --- sheet choices and preview --------------------------------------------------------
function layoutFor(paper, card) {
  return state.doc.layouts.find((l) => l.paper_size === paper && l.card_size === card);
}

function offerValidCards() {
  const paper = $("#paper-size").value;
  const select = $("#card-size");
  const valid = state.doc.layouts.filter((l) => l.paper_size === paper).map((l) => l.card_size);
  const wanted = valid.includes(select.value) ? select.value : valid[0];
  select.replaceChildren(...valid.map((card) => el("option", { value: card, text: card, selected: card === wanted })));
  $("#pair-note").textContent = `${paper} paper takes: ${valid.join(", ")}`;
}

function skipFromInput() {
  const layout = currentLayout();
  state.skip = new Set($("#skip").value.split(",").map((v) => v.trim()).filter((v) => /^\d+$/.test(v))
    .map(Number).filter((n) => n < layout.cards_per_sheet));
}

function toggleSkip(index) {
  if (state.skip.has(index)) state.skip.delete(index); else state.skip.add(index);
  $("#skip").value = [...state.skip].sort((a, b) => a - b).join(",");
  renderPreview();
}

function currentLayout() {
  return layoutFor($("#paper-size").value, $("#card-size").value);
}

function deckCounts() {
  const doubles = [...state.files.double_sided.keys()].filter((p) => state.files.fronts.has(p)).length;
  return { singles: state.files.fronts.size - doubles, doubles };
}

function renderPreview() {
  const layout = currentLayout();
  drawPreview($("#preview"), state.doc.papers[layout.paper_size], layout, state.skip, toggleSkip);
  const { singles, doubles } = deckCounts();
  const plan = sheetPlan(layout, state.skip, singles, doubles, $("#only-fronts").checked);
  const cards = singles + doubles;
  const caption = `${layout.paper_size} with ${layout.card_size} cards: ${layout.cols} × ${layout.rows} = `
    + `${layout.cards_per_sheet} slots per sheet, ${plan.free} used`
    + (cards ? `; ${cards} card(s) make ${plan.sheets} sheet(s), ${plan.pages} page(s)` : "");
  const caption_el = $("#preview-caption");
  caption_el.textContent = caption;
  caption_el.dataset.perSheet = plan.free;
  caption_el.dataset.sheets = plan.sheets;
}

// --- files: drop zones, ZIPs, thumbnails, pairing ---------------------------------------
async function addFiles(role, fileList) {
  try {
    for (const file of fileList) {
      if (/\.zip$/i.test(file.name)) {
        (await readZip(file)).forEach(({ path, file: image }) => {
          const [top, ...rest] = path.split("/");
          if (ROLES.includes(top) && rest.length) addOne(top, rest.join("/"), image);
          else addOne(role, path, image);
        });
      } else {
        addOne(role, file.webkitRelativePath || file.name, file);
      }
    }
  } catch (error) {
    SCM.notice(String(error.message || error), true);
  }
  renderFiles();
}

function addOne(role, path, file) {
  if (role === "back") state.files.back.clear();
  state.files[role].set(path, file);
}

function thumb(path, file) {
  return el("figure", { class: "thumb" },
    el("img", { src: URL.createObjectURL(file), alt: path, loading: "lazy" }),
    el("figcaption", { text: path }));
}

function renderFiles() {
  ROLES.forEach((role) => {
    const files = state.files[role];
    $(`#${role}-count`).textContent = files.size ? `${files.size} image(s)` : "none";
    const box = $(`#${role}-thumbs`);
    box.querySelectorAll("img").forEach((img) => URL.revokeObjectURL(img.src));
    box.replaceChildren(...[...files].slice(0, THUMBS_SHOWN).map(([p, f]) => thumb(p, f)));
  });
  renderPairs();
  renderPreview();
}

function renderPairs() {
  const list = $("#pairs");
  list.querySelectorAll("img").forEach((img) => URL.revokeObjectURL(img.src));
  const backs = [...state.files.double_sided];
  const paired = backs.filter(([path]) => state.files.fronts.has(path));
  const unmatched = backs.filter(([path]) => !state.files.fronts.has(path));
  $("#pairs-summary").textContent = backs.length
    ? `${paired.length} double-sided pair(s)` + (unmatched.length ? `; ${unmatched.length} back(s) without a front: ${unmatched.map(([p]) => p).slice(0, 5).join(", ")}` : "")
    : "No double-sided cards.";
  $("#pairs-summary").className = unmatched.length ? "error" : "";
  list.replaceChildren(...paired.slice(0, THUMBS_SHOWN).map(([path, back]) => el("li", { class: "pair" },
    thumb(path, state.files.fronts.get(path)), el("span", { "aria-hidden": "true", text: "↔" }), thumb(`${path} (back)`, back))));
}

function wireDrop(zone) {
  const role = zone.dataset.role;
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    addFiles(role, event.dataTransfer.files);
  });
  zone.querySelector("input[type=file]").addEventListener("change", (event) => {
    addFiles(role, event.target.files);
    event.target.value = "";
  });
}

// --- submitting -------------------------------------------------------------------------
function sheetForm() {
  const form = $("#sheets-form");
  const data = new FormData();
  ["paper_size", "card_size", "name", "crop", "extend_corners", "ppi", "quality"].forEach((name) => {
    const value = String(form.elements[name].value).trim();
    if (value) data.append(name, value);
  });
  data.append("only_fronts", form.elements.only_fronts.checked ? "true" : "false");
  if (form.elements.apply_profile.checked) data.append("apply_profile", "true");
  if (state.skip.size) data.append("skip", [...state.skip].join(","));
  ROLES.forEach((role) => state.files[role].forEach((file, path) => data.append(role, file, path)));
  return data;
}

async function submitSheets(event) {
  event.preventDefault();
  if (!state.files.fronts.size) { SCM.notice("Add at least one front image.", true); return; }
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.value = 0;
  const result = await SCM.upload("/api/jobs/sheets", sheetForm(), (fraction) => {
    bar.value = fraction;
    $("#upload-text").textContent = `Uploading ${Math.round(fraction * 100)} %`;
  });
  bar.hidden = true;
  $("#upload-text").textContent = "";
  if (result.status !== 202) {
    SCM.notice(result.body && result.body.error ? result.body.error.message : `upload failed (${result.status})`, true);
    return;
  }
  SCM.notice(`Job ${result.body.id} queued.`);
  await loadJobs();
}

async function submitJson(path, body) {
  const response = await SCM.api(path, { method: "POST", json: body });
  if (response.status !== 202) { SCM.notice(await SCM.errorText(response), true); return; }
  SCM.notice(`Job ${(await response.json()).id} queued.`);
  await loadJobs();
}

async function submitOffset(event) {
  event.preventDefault();
  const form = event.target;
  const data = new FormData();
  data.append("x", form.elements.x.value);
  data.append("y", form.elements.y.value);
  const pdf = form.elements.pdf.files[0];
  if (pdf) data.append("pdf", pdf);
  const source = form.elements.source_job_id.value.trim();
  if (source) data.append("source_job_id", source);
  const result = await SCM.upload("/api/jobs/offset", data, () => {});
  if (result.status !== 202) { SCM.notice(result.body ? result.body.error.message : "upload failed", true); return; }
  SCM.notice(`Job ${result.body.id} queued.`);
  await loadJobs();
}

// --- printer profile ----------------------------------------------------------------------
function showProfile() {
  const p = state.profile;
  $("#profile-summary").textContent = p ? `x ${p.x}, y ${p.y} px${p.paper_size ? `, ${p.paper_size}` : ""}` : "none saved";
  $("#apply-profile").disabled = !p;
  if (!p) $("#apply-profile").checked = false;
}

async function loadProfile() {
  const response = await SCM.api("/api/profile");
  state.profile = response.ok ? await response.json() : null;
  if (state.profile) {
    $("#offset-x").value = state.profile.x;
    $("#offset-y").value = state.profile.y;
    if (state.profile.paper_size) {
      $("#offset-paper").value = state.profile.paper_size;
      $("#paper-size").value = state.profile.paper_size;
      offerValidCards();
    }
  }
  showProfile();
}

async function saveProfile() {
  const form = $("#offset-form");
  const response = await SCM.api("/api/profile", { method: "PUT", json: {
    x: Number(form.elements.x.value), y: Number(form.elements.y.value),
    paper_size: form.elements.paper_size.value } });
  if (!response.ok) { SCM.notice(await SCM.errorText(response), true); return; }
  state.profile = await response.json();
  showProfile();
  SCM.notice("Printer profile saved.");
}

// --- wiring ---------------------------------------------------------------------------------
async function loadLayouts() {
  if (state.doc) return;
  state.doc = await fetch("/api/layouts").then((r) => r.json());
  offerValidCards();
  renderPreview();
}

$("#paper-size").addEventListener("change", () => { offerValidCards(); skipFromInput(); renderPreview(); });
$("#card-size").addEventListener("change", () => { skipFromInput(); renderPreview(); });
$("#skip").addEventListener("input", () => { skipFromInput(); renderPreview(); });
$("#only-fronts").addEventListener("change", renderPreview);
$("#clear-files").addEventListener("click", () => { ROLES.forEach((r) => state.files[r].clear()); renderFiles(); });
document.querySelectorAll(".drop").forEach(wireDrop);
$("#sheets-form").addEventListener("submit", submitSheets);
$("#offset-form").addEventListener("submit", submitOffset);
$("#save-profile").addEventListener("click", saveProfile);
$("#refresh-jobs").addEventListener("click", loadJobs);
$("#calibration-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submitJson("/api/jobs/calibration", { paper_size: event.target.elements.paper_size.value });
});

SCM.onSignedIn = async () => {
  $("#app-section").hidden = false;
  await loadLayouts();
  await loadProfile();
  await loadJobs();
};
SCM.onSignedOut = () => {
  $("#app-section").hidden = true;
  stopJobs();
};
