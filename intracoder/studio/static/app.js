// The studio page: plain DOM and fetch, nothing from a CDN. State lives in the workspace
// (model folders, faceset indexes, job folders), so a reload loses nothing. Names from the
// workspace only ever become text (textContent, attributes), never markup: see issue 26.
"use strict";
const $ = (id) => document.getElementById(id);

// The page's cookie carries the token from now on: keep it out of the address bar and history.
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function showError(message) {
  const box = $("error");
  box.textContent = message || "";
  box.classList.toggle("shown", Boolean(message));
}

async function api(path, body) {
  const options = body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({error: `${response.status} ${response.statusText}`}));
  if (!response.ok || data.error) { showError(data.error); throw new Error(data.error); }
  showError("");
  return data;
}

const query = (params) => new URLSearchParams(params).toString();
const round = (value, digits) => (value === null || value === undefined ? "-" : Number(value).toFixed(digits));

function fill(selector, values) {
  for (const select of document.querySelectorAll(selector)) {
    const keep = select.value;
    select.replaceChildren(...values.map((v) => element("option", {value: v, textContent: v})));
    if (values.includes(keep)) select.value = keep;
  }
}

async function loadWorkspace() {
  const ws = await api("/api/workspace");
  fill(".faceset-list", ws.facesets);
  fill(".model-list", ws.models);
  fill(".video-list", ws.videos);
  if (ws.facesets.length > 1) $("tr-b").value = ws.facesets[1];
}

for (const tab of document.querySelectorAll("button.tab")) {
  tab.addEventListener("click", () => {
    document.querySelectorAll("button.tab, .panel").forEach((e) => e.classList.remove("active"));
    tab.classList.add("active");
    $(tab.dataset.tab).classList.add("active");
  });
}

// --- facesets ---------------------------------------------------------------------------
const selected = new Set();

async function showFaceset() {
  const dir = $("fs-dir").value;
  if (!dir) return;
  const data = await api(`/api/faceset?${query({dir})}`);
  rows = Object.fromEntries(data.faces.map((f) => [f.name, f]));
  selected.clear();
  $("fs-grid").replaceChildren(...data.faces.map((f) => {
    const caption = `blur ${round(f.blur, 0)} yaw ${round(f.yaw, 1)}` +
      (f.identity === null || f.identity === undefined ? "" : ` id ${round(f.identity, 2)}`);
    const figure = element("figure", {}, [
      element("img", {src: `/api/faceset/crop?${query({dir, name: f.name})}`, alt: f.name}),
      element("figcaption", {textContent: caption})]);
    figure.dataset.name = f.name;
    return figure;
  }));
  filterGrid();
  $("fs-summary").textContent = `${data.faces.length} faces, ${data.dropped.length} dropped` +
    (data.order ? `, sorted by ${data.order}` : "");
  $("fs-plots").src = `/api/faceset/plots.png?${query({dir})}&t=${Date.now()}`;
}

$("fs-grid").addEventListener("click", (event) => {
  const figure = event.target.closest("figure");
  if (!figure) return;
  const name = figure.dataset.name;
  if (selected.has(name)) selected.delete(name); else selected.add(name);
  figure.classList.toggle("selected");
});
// Filter: hide faces blurrier than "min blur" or turned further than "max |yaw|" (shown
// only; nothing moves until "Drop selected").
let rows = {};
function filterGrid() {
  const minBlur = Number($("fs-min-blur").value || 0), maxYaw = Number($("fs-max-yaw").value || 1e9);
  for (const figure of document.querySelectorAll("#fs-grid figure")) {
    const f = rows[figure.dataset.name] || {};
    const hide = (f.blur !== null && f.blur < minBlur) || (f.yaw !== null && Math.abs(f.yaw) > maxYaw);
    figure.classList.toggle("filtered", hide);
  }
}
$("fs-min-blur").addEventListener("input", filterGrid);
$("fs-max-yaw").addEventListener("input", filterGrid);
$("fs-dir").addEventListener("change", showFaceset);
$("fs-sort").addEventListener("click", async () => {
  await api("/api/faceset/sort", {dir: $("fs-dir").value, by: $("fs-by").value});
  await showFaceset();
});
$("fs-drop").addEventListener("click", async () => {
  await api("/api/faceset/drop", {dir: $("fs-dir").value, names: [...selected]});
  await showFaceset();
});
$("fs-restore").addEventListener("click", async () => {
  await api("/api/faceset/restore", {dir: $("fs-dir").value});
  await showFaceset();
});

// --- training ---------------------------------------------------------------------------
$("tr-start").addEventListener("click", () => api("/api/train/start", {
  a: $("tr-a").value, b: $("tr-b").value, model: $("tr-model").value,
  preset: $("tr-preset").value, minutes: $("tr-minutes").value,
  preview_every: $("tr-preview").value}));
$("tr-stop").addEventListener("click", () => api("/api/train/stop", {model: $("tr-model").value}));

async function pollTraining() {
  const model = $("tr-model").value;
  if (!model || !$("training").classList.contains("active")) return;
  const s = await api(`/api/train/status?${query({model})}`).catch(() => null);
  if (!s) return;
  const state = s.running ? "training" : (s.returncode === null ? "idle" : `stopped (exit ${s.returncode})`);
  $("tr-status").textContent = `${state}; saved iteration ${s.iteration ?? "-"}` +
    (s.done !== null ? `; ${s.done}${s.total ? "/" + s.total : ""} at ${s.rate}, left ${s.left ?? "?"}` : "") +
    (s.message ? `\n${s.message}` : "");
  const stamp = Date.now();
  if (s.preview) $("tr-preview-img").src = `/api/model/image?${query({model, name: "preview.png"})}&t=${stamp}`;
  if (s.loss) $("tr-loss-img").src = `/api/model/image?${query({model, name: "loss.png"})}&t=${stamp}`;
}
setInterval(pollTraining, 2000);

// --- convert ----------------------------------------------------------------------------
function settings() {
  const out = {};
  for (const input of document.querySelectorAll(".controls [data-key]")) {
    const key = input.dataset.key;
    if (input.type === "checkbox") out[key] = input.checked;
    else if (input.type === "number") out[key] = input.value === "" ? null : Number(input.value);
    else out[key] = input.value;
  }
  return out;
}

let frameTimer = null;
function showFrame() {
  clearTimeout(frameTimer);
  frameTimer = setTimeout(() => {
    const params = {video: $("cv-video").value, model: $("cv-model").value,
                    frame: $("cv-frame").value, settings: JSON.stringify(settings())};
    $("cv-frame-no").textContent = params.frame;
    for (const which of ["before", "after"]) {
      const img = $(`cv-${which}`);
      img.onerror = async () => {
        const r = await fetch(img.src); const d = await r.json().catch(() => ({}));
        showError(d.error || "the frame could not be made");
      };
      // "Show mask": the after frame with the blend mask tinted instead of the swapped face.
      const shown = which === "after" && $("cv-show-mask").checked ? "mask" : which;
      img.src = `/api/convert/frame.png?${query({...params, which: shown})}`;
    }
  }, 150);
}

function showKeys(keys) {
  $("cv-keys").textContent = keys && keys.keyframes && keys.keyframes.length
    ? "settings from frame " + keys.keyframes.map((k) => `${k.frame}: ${JSON.stringify(k.settings)}`).join("\nsettings from frame ")
    : "no per-scene settings yet: every frame uses the controls' values when rendered via Apply";
}

$("cv-open").addEventListener("click", async () => {
  const info = await api(`/api/convert/info?${query({video: $("cv-video").value, model: $("cv-model").value})}`);
  $("cv-frame").max = info.frames - 1;
  showKeys(info.settings);
  showFrame();
});
$("cv-frame").addEventListener("input", showFrame);
$("cv-show-mask").addEventListener("change", showFrame);
for (const input of document.querySelectorAll(".controls [data-key]")) input.addEventListener("change", showFrame);
$("cv-apply").addEventListener("click", async () => showKeys(await api("/api/convert/apply_from", {
  model: $("cv-model").value, frame: Number($("cv-frame").value), settings: settings()})));
$("cv-render").addEventListener("click", () => api("/api/convert/render", {
  model: $("cv-model").value, video: $("cv-video").value, output: $("cv-output").value}));

async function pollRender() {
  const output = $("cv-output").value;
  if (!output || !$("convert").classList.contains("active")) return;
  const s = await fetch(`/api/convert/status?${query({output})}`).then((r) => r.json()).catch(() => null);
  if (!s || s.error) return;
  $("cv-status").textContent = s.running ? `rendering ${s.done ?? 0}/${s.total ?? "?"} at ${s.rate ?? "?"}, left ${s.left ?? "?"}`
    : (s.returncode === 0 ? `done: ${output}` : (s.message || (s.returncode === null ? "" : `failed (exit ${s.returncode})`)));
}
setInterval(pollRender, 2000);

// --- report -----------------------------------------------------------------------------
$("rp-start").addEventListener("click", () => api("/api/report/start", {
  model: $("rp-model").value, source: $("rp-source").value, swapped: $("rp-swapped").value}));

async function pollReport() {
  const swapped = $("rp-swapped").value;
  if (!swapped || !$("report").classList.contains("active")) return;
  const s = await fetch(`/api/report/status?${query({swapped})}`).then((r) => r.json()).catch(() => null);
  if (!s || s.error) return;
  $("rp-status").textContent = s.running ? `evaluating ${s.done ?? 0}/${s.total ?? "?"}` : (s.message || "");
  // Only the workspace's own files go into the frame, whatever the answer says.
  if (s.ready && s.url.startsWith("/files/") && $("rp-frame").dataset.url !== s.url) { $("rp-frame").src = s.url; $("rp-frame").dataset.url = s.url; }
}
setInterval(pollReport, 2000);

loadWorkspace().then(showFaceset).catch(() => {});
