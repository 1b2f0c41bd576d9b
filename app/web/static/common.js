// Shared by both pages: tokens, API calls, first-run setup, sign in and out.
// Plain browser JavaScript, no build step. Tokens live in sessionStorage (gone with the tab).
"use strict";

const SCM = {
  $: (selector) => document.querySelector(selector),
  onSignedIn: null,   // set by the page: async (me) => {}
  onSignedOut: null,
  me: null,
};

SCM.el = function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  children.flat().forEach((child) => {
    if (child !== null && child !== undefined) node.append(child);
  });
  return node;
};

SCM.notice = function notice(text, isError) {
  const box = SCM.$("#notice");
  box.textContent = text || "";
  box.className = isError ? "error" : "";
};

SCM.tokens = () => ({ access: sessionStorage.getItem("access"),
  refresh: sessionStorage.getItem("refresh") });

SCM.saveTokens = function saveTokens(data) {
  if (data.access_token) sessionStorage.setItem("access", data.access_token);
  if (data.refresh_token) sessionStorage.setItem("refresh", data.refresh_token);
};

SCM.errorText = async function errorText(response) {
  try {
    const body = await response.json();
    if (body.error) return body.error.message || body.error.code;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
};

// Access tokens are short-lived: on a 401, trade the refresh token for new tokens once.
// A refresh token works once (the answer carries the next one) and presenting a used one
// again signs the whole session out, so requests that hit a 401 together share one
// refresh instead of each sending the same token.
let pendingRefresh = null;

async function tradeRefreshToken() {
  const { refresh } = SCM.tokens();
  if (!refresh) return false;
  const response = await fetch("/api/auth/refresh", {
    method: "POST", headers: { Authorization: `Bearer ${refresh}` },
  });
  if (!response.ok) return false;
  SCM.saveTokens(await response.json());
  return true;
}

function refreshAccess() {
  if (!pendingRefresh) {
    pendingRefresh = tradeRefreshToken().finally(() => { pendingRefresh = null; });
  }
  return pendingRefresh;
}

SCM.api = async function api(path, options = {}, retried = false) {
  const headers = Object.assign({}, options.headers || {});
  const { access } = SCM.tokens();
  if (access) headers.Authorization = `Bearer ${access}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = Object.assign({}, options, { body: JSON.stringify(options.json) });
  }
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401 && !retried && await refreshAccess()) {
    return SCM.api(path, options, true);
  }
  if (response.status === 401) SCM.signedOut();
  return response;
};

// fetch() cannot report upload progress; XMLHttpRequest can.
SCM.upload = function upload(path, formData, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Authorization", `Bearer ${SCM.tokens().access}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      resolve({ status: xhr.status, body });
    });
    xhr.addEventListener("error", () => resolve({ status: 0, body: null }));
    xhr.send(formData);
  });
};

SCM.copy = async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    SCM.notice(`Copied ${text}`);
  } catch (_) {
    SCM.notice(`Copy this id: ${text}`);
  }
};

SCM.signedOut = function signedOut() {
  sessionStorage.removeItem("access");
  sessionStorage.removeItem("refresh");
  SCM.me = null;
  SCM.$("#login-section").hidden = false;
  SCM.$("#who").hidden = true;
  SCM.$("#admin-link").hidden = true;
  if (SCM.onSignedOut) SCM.onSignedOut();
};

async function signedIn() {
  const response = await SCM.api("/api/auth/me");
  if (!response.ok) { SCM.signedOut(); return; }
  SCM.me = await response.json();
  SCM.$("#who-name").textContent = `${SCM.me.username} (${SCM.me.role})`;
  SCM.$("#who").hidden = false;
  SCM.$("#admin-link").hidden = SCM.me.role !== "admin";
  SCM.$("#login-section").hidden = true;
  SCM.$("#setup-section").hidden = true;
  if (SCM.onSignedIn) await SCM.onSignedIn(SCM.me);
}

SCM.$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
  if (!response.ok) { SCM.notice(await SCM.errorText(response), true); return; }
  SCM.saveTokens(await response.json());
  event.target.reset();
  SCM.notice("");
  signedIn();
});

SCM.$("#logout").addEventListener("click", SCM.signedOut);

// --- first run: #setup=<token> opens the "create the first admin" form ----------------
function setupToken() {
  const match = /^#setup=([A-Za-z0-9_-]{1,200})$/.exec(window.location.hash);
  return match ? match[1] : null;
}

SCM.$("#setup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/api/auth/setup", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: setupToken(), username: form.get("username"),
      password: form.get("password") }),
  });
  if (!response.ok) { SCM.notice(await SCM.errorText(response), true); return; }
  const user = await response.json();
  history.replaceState(null, "", window.location.pathname);
  SCM.$("#setup-section").hidden = true;
  SCM.$("#no-user-hint").hidden = true;
  SCM.$("#login-section").hidden = false;
  SCM.$("#login-username").value = user.username;
  SCM.notice(`Admin ${user.username} created. Sign in with the new password.`);
  SCM.$("#login-password").focus();
});

async function boot() {
  if (SCM.tokens().access) { await signedIn(); return; }
  SCM.signedOut();
  const state = await fetch("/api/auth/setup").then((r) => r.json()).catch(() => ({}));
  if (!state.needed) return;
  if (setupToken()) {
    SCM.$("#setup-section").hidden = false;
    SCM.$("#login-section").hidden = true;
  } else {
    SCM.$("#no-user-hint").hidden = false;
  }
}

window.addEventListener("DOMContentLoaded", boot);
// Pasting the setup link into a tab already showing the page changes only the fragment.
window.addEventListener("hashchange", () => { if (setupToken()) boot(); });
