// The qwenedit playground: plain JavaScript against the public API, nothing else.
"use strict";

const KEY_STORE = "qwenedit.key";
const TASKS_STORE = "qwenedit.tasks";
const MAX_IMAGES = 3;
const KEPT_TASKS = 10;
const TERMINAL = ["completed", "failed"];

const $ = (id) => document.getElementById(id);
const chosen = []; // {name, url (uploaded), preview (object URL)}
const cards = new Map(); // task id -> card elements

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}`, ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (body && body.error) || {};
    throw Object.assign(new Error(error.message || response.statusText), { param: error.param, status: response.status });
  }
  return body;
}

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
}

function showError(error) {
  const target = $(`error-${error.param}`) || $("error-general");
  target.textContent = error.message;
  const field = $(error.param === "image_urls" ? "images" : error.param);
  if (field) field.focus();
}

async function refreshBalance() {
  if (!apiKey()) { $("balance").textContent = "no key saved"; return; }
  try {
    const credits = await api("/v1/credits");
    $("balance").textContent = `balance: ${credits.balance} credits`;
  } catch (error) {
    $("balance").textContent = error.message;
  }
}

// ---- images -------------------------------------------------------------------------------

async function addFiles(files) {
  clearErrors();
  for (const file of files) {
    if (chosen.length >= MAX_IMAGES) { showError({ param: "image_urls", message: `At most ${MAX_IMAGES} images` }); break; }
    const entry = { name: file.name, url: null, preview: URL.createObjectURL(file) };
    chosen.push(entry);
    renderThumbs();
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      entry.url = (await api("/v1/files", { method: "POST", body: form })).url;
    } catch (error) {
      chosen.splice(chosen.indexOf(entry), 1);
      showError({ param: "image_urls", message: `${file.name}: ${error.message}` });
    }
    renderThumbs();
  }
}

function renderThumbs() {
  const list = $("thumbs");
  list.replaceChildren();
  chosen.forEach((entry, index) => {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = entry.preview;
    image.alt = entry.name + (entry.url ? "" : " (uploading)");
    image.dataset.uploaded = entry.url ? "yes" : "no";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "secondary";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${entry.name}`);
    remove.addEventListener("click", () => { chosen.splice(index, 1); renderThumbs(); });
    item.append(image, remove);
    list.append(item);
  });
}

// ---- tasks --------------------------------------------------------------------------------

function rememberTask(id) {
  const ids = JSON.parse(localStorage.getItem(TASKS_STORE) || "[]").filter((known) => known !== id);
  ids.unshift(id);
  localStorage.setItem(TASKS_STORE, JSON.stringify(ids.slice(0, KEPT_TASKS)));
}

function card(id) {
  if (cards.has(id)) return cards.get(id);
  const root = document.createElement("li");
  root.className = "task";
  root.dataset.taskId = id;
  root.dataset.progressLog = "";
  root.innerHTML = `<header class="row"><code></code><span class="status" aria-live="polite"></span>
    <span class="detail"></span><button type="button" class="secondary cancel">Cancel</button></header>
    <progress max="100" value="0"></progress><p class="field-error" role="alert"></p><div class="gallery"></div>`;
  root.querySelector("code").textContent = id;
  root.querySelector(".cancel").addEventListener("click", async () => {
    try { render(await api(`/v1/tasks/${id}/cancel`, { method: "POST" })); refreshBalance(); }
    catch (error) { root.querySelector(".field-error").textContent = error.message; }
  });
  $("tasks").prepend(root);
  const parts = { root, status: root.querySelector(".status"), detail: root.querySelector(".detail"),
    progress: root.querySelector("progress"), cancel: root.querySelector(".cancel"),
    error: root.querySelector(".field-error"), gallery: root.querySelector(".gallery") };
  cards.set(id, parts);
  return parts;
}

function render(task) {
  const parts = card(task.id);
  const info = task.task_info || {};
  parts.root.dataset.status = task.status;
  parts.status.textContent = task.status;
  parts.progress.value = task.progress;
  parts.root.dataset.progressLog += `${task.progress} `;
  if (task.status === "pending") {
    const position = info.queue_position;
    parts.root.dataset.queuePosition = position ?? "";
    parts.detail.textContent = `${position === 0 ? "next in queue" : `queue position ${position}`} · about ${info.estimated_time}s`;
  } else if (task.status === "processing") {
    parts.detail.textContent = `${task.progress}% · ${info.estimated_time}s left`;
  } else {
    parts.detail.textContent = task.usage && task.usage.credits_used !== undefined ? `${task.usage.credits_used} credits used` : "";
  }
  parts.cancel.hidden = !info.can_cancel;
  if (task.error) parts.error.textContent = `${task.error.code}: ${task.error.message}`;
  if (task.status === "completed" && !parts.gallery.childElementCount) {
    (task.results || []).forEach((url, index) => {
      const figure = document.createElement("figure");
      const image = document.createElement("img");
      image.src = url;
      image.alt = `Result ${index + 1} of ${task.id}`;
      const link = document.createElement("a");
      link.href = url;
      link.download = `${task.id}-${index}.png`;
      link.textContent = `Download ${index + 1}`;
      const caption = document.createElement("figcaption");
      caption.append(link);
      figure.append(image, caption);
      parts.gallery.append(figure);
    });
  }
}

// Server-Sent Events read with fetch (EventSource cannot send the Authorization header).
async function follow(id) {
  let lastId = null;
  let done = false;
  while (!done) {
    try {
      const headers = { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      const response = await fetch(`/v1/tasks/${id}/events`, { headers });
      if (!response.ok) throw new Error(`stream ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("id: ")) lastId = line.slice(4);
            if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data) {
            const task = JSON.parse(data);
            render(task);
            if (TERMINAL.includes(task.status)) { done = true; refreshBalance(); }
          }
        }
      }
    } catch (error) {
      const task = await api(`/v1/tasks/${id}`).catch(() => null);
      if (!task) return;
      render(task);
      done = TERMINAL.includes(task.status);
      if (!done) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

function body() {
  const request = { model: "qwen-image-edit-plus", prompt: $("prompt").value, image_urls: chosen.filter((e) => e.url).map((e) => e.url) };
  const number = (id) => ($(id).value.trim() === "" ? undefined : Number($(id).value));
  const text = (id) => ($(id).value.trim() === "" ? undefined : $(id).value.trim());
  Object.assign(request, { n: number("n"), seed: number("seed"), size: text("size"),
    negative_prompt: text("negative_prompt"), callback_url: text("callback_url"),
    prompt_extend: $("prompt_extend").checked, watermark: $("watermark").checked });
  return JSON.stringify(request);
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  if (!apiKey()) { showError({ param: "general", message: "Save an API key first" }); return; }
  $("submit").disabled = true;
  try {
    const task = await api("/v1/images/generations", { method: "POST", body: body(), headers: { "Content-Type": "application/json" } });
    rememberTask(task.id);
    render(task);
    refreshBalance();
    follow(task.id);
  } catch (error) {
    showError(error);
  } finally {
    $("submit").disabled = false;
  }
}

function start() {
  $("api-key").value = apiKey();
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORE, $("api-key").value.trim());
    refreshBalance();
  });
  $("images").addEventListener("change", (event) => { addFiles([...event.target.files]); event.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); addFiles([...event.dataTransfer.files]); });
  $("edit-form").addEventListener("submit", submit);
  refreshBalance();
  const known = JSON.parse(localStorage.getItem(TASKS_STORE) || "[]");
  for (const id of [...known].reverse()) {
    api(`/v1/tasks/${id}`).then((task) => { render(task); if (!TERMINAL.includes(task.status)) follow(id); }).catch(() => {});
  }
}

start();
