// The Masks tab (DeepFaceLab's XSeg editor): include/exclude polygons drawn on a crop,
// saved into the crop's metadata, carried to the neighbouring frames of its clip, and the
// crops the mask net is least sure of. Uses app.js's $, element, api, query and showError.
// Names only ever become text or attributes, never markup (issue 26).
"use strict";
const CANVAS = 384;  // the crop is drawn this many CSS pixels wide, whatever its own size
const CLOSE_PX = 9;  // a click this near the first point closes the polygon
const maskEditor = {
  dir: "", name: "", size: 0, faces: [],
  polygons: [],  // closed: {mode, points: [[x, y], ...]} in crop pixels, drawn in order
  open: null,  // the polygon being drawn
  mode: "include", dirty: false, background: null, hover: null,
};
const MARKS = {user: ["●", "labelled by hand"], propagated: ["◐", "label propagated from a neighbouring frame"]};

const maskStatus = (text) => { $("mk-status").textContent = text; };

// --- crops list -------------------------------------------------------------------------
async function loadMaskFaceset() {
  const dir = $("mk-dir").value;
  if (!dir) return;
  const data = await api(`/api/masks/faceset?${query({dir})}`);
  const changed = dir !== maskEditor.dir;
  maskEditor.dir = dir;
  maskEditor.faces = data.faces;
  renderMaskList();
  if (changed || !data.faces.some((f) => f.name === maskEditor.name)) {
    maskEditor.name = "";
    if (data.faces.length) await openCrop(data.faces[0].name, true);
  }
}

function renderMaskList() {
  const dir = maskEditor.dir, faces = maskEditor.faces;
  $("mk-list").replaceChildren(...faces.map((f) => {
    const [mark, title] = MARKS[f.label] || ["", "not labelled"];
    const item = element("li", {title}, [
      element("img", {src: `/api/faceset/crop?${query({dir, name: f.name, size: 32})}`, alt: "", loading: "lazy"}),
      element("span", {className: "name", textContent: f.name}),
      element("span", {className: `mark ${f.label || ""}`, textContent: mark})]);
    item.dataset.name = f.name;
    item.dataset.label = f.label || "";
    item.classList.toggle("current", f.name === maskEditor.name);
    return item;
  }));
  const user = faces.filter((f) => f.label === "user").length;
  const propagated = faces.filter((f) => f.label === "propagated").length;
  $("mk-summary").textContent = `${faces.length} crops: ● ${user} by hand, ◐ ${propagated} propagated`;
}

function markCurrent() {
  for (const item of document.querySelectorAll("#mk-list li, #mk-uncertain li")) {
    item.classList.toggle("current", item.dataset.name === maskEditor.name);
  }
  const current = document.querySelector("#mk-list li.current");
  if (current) current.scrollIntoView({block: "nearest"});
}

function pickCrop(event) {
  const item = event.target.closest("li");
  if (item) openCrop(item.dataset.name).catch(() => {});
}
$("mk-list").addEventListener("click", pickCrop);
$("mk-uncertain").addEventListener("click", pickCrop);

// --- one crop ---------------------------------------------------------------------------
async function openCrop(name, force = false) {
  if (!force && maskEditor.dirty && name !== maskEditor.name &&
      !confirm(`Discard the unsaved polygons of ${maskEditor.name}?`)) return;
  const dir = maskEditor.dir;
  const labels = await api(`/api/masks/labels?${query({dir, name})}`);
  Object.assign(maskEditor, {name, size: labels.size, polygons: labels.polygons, open: null, dirty: false});
  markCurrent();
  maskStatus(labels.polygons.length ? (labels.propagated_from
    ? `${name}: propagated from ${labels.propagated_from}` : `${name}: labelled by hand`) : `${name}: not labelled`);
  await loadBackground();
}

const imageOf = (url) => new Promise((resolve, reject) => {
  const img = Object.assign(new Image(), {src: url, onload: () => resolve(img)});
  img.onerror = async () => {  // the one line the server answered instead
    const data = await fetch(url).then((r) => r.json()).catch(() => ({}));
    reject(new Error(data.error || "the image could not be loaded"));
  };
});

async function loadBackground() {
  const {dir, name, size} = maskEditor;
  if (!name) return;
  const overlay = $("mk-overlay").checked;
  const url = overlay ? `/api/masks/overlay?${query({dir, name, which: $("mk-which").value})}`
    : `/api/faceset/crop?${query({dir, name, size})}`;
  let image = null;
  try {
    image = await imageOf(`${url}&t=${Date.now()}`);
  } catch (error) {
    maskStatus(error.message);  // e.g. no learned mask yet: the crop itself instead
    if (overlay) image = await imageOf(`/api/faceset/crop?${query({dir, name, size})}`);
  }
  if (maskEditor.name !== name) return;  // another crop was opened meanwhile: its own image
  maskEditor.background = image;
  drawMasks();
}

// --- drawing ----------------------------------------------------------------------------
const COLOURS = {include: "#43a047", exclude: "#e53935"};
const scale = () => CANVAS / (maskEditor.size || CANVAS);

function path(ctx, points, closed) {
  const s = scale();
  ctx.beginPath();
  points.forEach(([x, y], i) => (i ? ctx.lineTo(x * s, y * s) : ctx.moveTo(x * s, y * s)));
  if (closed) ctx.closePath();
}

function drawMasks() {
  const canvas = $("mk-canvas"), ctx = canvas.getContext("2d");
  const s = scale();
  ctx.clearRect(0, 0, CANVAS, CANVAS);
  if (maskEditor.background) {
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(maskEditor.background, 0, 0, CANVAS, CANVAS);
  }
  // The mask the polygons make, as training will rasterise it: include fills, exclude cuts.
  const mask = document.createElement("canvas");
  mask.width = mask.height = CANVAS;
  const m = mask.getContext("2d");
  m.fillStyle = "#00e5ff";
  for (const polygon of maskEditor.polygons) {
    m.globalCompositeOperation = polygon.mode === "include" ? "source-over" : "destination-out";
    path(m, polygon.points, true);
    m.fill();
  }
  ctx.globalAlpha = 0.3;
  ctx.drawImage(mask, 0, 0);
  ctx.globalAlpha = 1;
  maskEditor.polygons.forEach((polygon, i) => {
    ctx.strokeStyle = ctx.fillStyle = COLOURS[polygon.mode];
    // The last one thicker: it is the one Delete removes.
    ctx.lineWidth = i === maskEditor.polygons.length - 1 && !maskEditor.open ? 3.5 : 2;
    path(ctx, polygon.points, true);
    ctx.stroke();
    for (const [x, y] of polygon.points) ctx.fillRect(x * s - 2.5, y * s - 2.5, 5, 5);
  });
  ctx.lineWidth = 2;
  const open = maskEditor.open;
  if (open && open.points.length) {
    ctx.strokeStyle = ctx.fillStyle = COLOURS[open.mode];
    ctx.setLineDash([6, 4]);
    const points = maskEditor.hover ? [...open.points, maskEditor.hover] : open.points;
    path(ctx, points, false);
    ctx.stroke();
    ctx.setLineDash([]);
    for (const [x, y] of open.points) ctx.fillRect(x * s - 2.5, y * s - 2.5, 5, 5);
    const [fx, fy] = open.points[0];  // click it (or press Enter) to close the polygon
    ctx.beginPath();
    ctx.arc(fx * s, fy * s, CLOSE_PX - 2, 0, 2 * Math.PI);
    ctx.stroke();
  }
  canvas.dataset.polygons = String(maskEditor.polygons.length);
  $("mk-save").classList.toggle("unsaved", maskEditor.dirty);
}

function cropPoint(event) {
  const canvas = $("mk-canvas"), box = canvas.getBoundingClientRect();  // inside its border
  const s = (maskEditor.size || CANVAS) / canvas.clientWidth;
  const at = (v) => Math.min(Math.max(Math.round(v * s * 100) / 100, 0), maskEditor.size);
  return [at(event.clientX - box.left - canvas.clientLeft), at(event.clientY - box.top - canvas.clientTop)];
}

function changed() { maskEditor.dirty = true; drawMasks(); }

function closePolygon() {
  const open = maskEditor.open;
  if (!open || open.points.length < 3) { maskStatus("a polygon needs at least 3 points"); return false; }
  maskEditor.polygons.push(open);
  maskEditor.open = null;
  maskEditor.hover = null;
  changed();
  return true;
}

$("mk-canvas").addEventListener("click", (event) => {
  if (!maskEditor.name) return;
  const point = cropPoint(event), open = maskEditor.open;
  if (open && open.points.length >= 3) {
    const [fx, fy] = open.points[0], s = scale();
    if (Math.hypot((point[0] - fx) * s, (point[1] - fy) * s) <= CLOSE_PX) { closePolygon(); return; }
  }
  if (!open) maskEditor.open = {mode: maskEditor.mode, points: []};
  maskEditor.open.points.push(point);
  changed();
});
$("mk-canvas").addEventListener("mousemove", (event) => {
  if (maskEditor.open) { maskEditor.hover = cropPoint(event); drawMasks(); }
});
$("mk-canvas").addEventListener("mouseleave", () => { maskEditor.hover = null; drawMasks(); });

function setMode(mode) {
  maskEditor.mode = mode;
  if (maskEditor.open) maskEditor.open.mode = mode;
  $("mk-include").classList.toggle("active", mode === "include");
  $("mk-exclude").classList.toggle("active", mode === "exclude");
  drawMasks();
}

function undoPoint() {
  if (!maskEditor.open && maskEditor.polygons.length) maskEditor.open = maskEditor.polygons.pop();  // reopen it
  if (!maskEditor.open) return;
  maskEditor.open.points.pop();
  if (!maskEditor.open.points.length) maskEditor.open = null;
  changed();
}

function deletePolygon() { if (maskEditor.open) maskEditor.open = null; else maskEditor.polygons.pop(); changed(); }

async function saveLabels() {
  if (maskEditor.open && !closePolygon()) return;
  const {dir, name} = maskEditor;
  const saved = await api("/api/masks/labels", {dir, name, polygons: maskEditor.polygons});
  Object.assign(maskEditor, {polygons: saved.polygons, dirty: false});
  const row = maskEditor.faces.find((f) => f.name === name);
  if (row) row.label = saved.polygons.length ? "user" : null;
  renderMaskList();
  maskStatus(`${name}: saved ${saved.polygons.length} polygon(s)`);
  if ($("mk-overlay").checked) await loadBackground(); else drawMasks();
}

$("mk-include").addEventListener("click", () => setMode("include"));
$("mk-exclude").addEventListener("click", () => setMode("exclude"));
$("mk-close").addEventListener("click", closePolygon);
$("mk-undo").addEventListener("click", undoPoint);
$("mk-delete").addEventListener("click", deletePolygon);
$("mk-clear").addEventListener("click", () => { maskEditor.polygons = []; maskEditor.open = null; changed(); });
$("mk-save").addEventListener("click", () => saveLabels().catch(() => {}));
$("mk-overlay").addEventListener("change", () => loadBackground().catch(() => {}));
$("mk-which").addEventListener("change", () => $("mk-overlay").checked && loadBackground().catch(() => {}));
$("mk-dir").addEventListener("change", () => loadMaskFaceset().catch(() => {}));

function step(by) {
  const names = maskEditor.faces.map((f) => f.name);
  const next = names[names.indexOf(maskEditor.name) + by];
  if (next) openCrop(next).catch(() => {});
}

document.addEventListener("keydown", (event) => {
  if (!$("masks").classList.contains("active") || event.ctrlKey || event.metaKey || event.altKey ||
      event.target.closest("input, select, textarea")) return;
  const actions = {i: () => setMode("include"), e: () => setMode("exclude"), Enter: closePolygon,
                   Backspace: undoPoint, Delete: deletePolygon, ArrowDown: () => step(1), ArrowUp: () => step(-1)};
  const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
  if (!action) return;
  event.preventDefault();
  action();
});

// --- propagation and "Next to label" -----------------------------------------------------
$("mk-propagate").addEventListener("click", async () => {
  const {dir, name} = maskEditor;
  if (maskEditor.dirty) await saveLabels();
  const result = await api("/api/masks/propagate", {dir, name, radius: Number($("mk-radius").value || 10)});
  await loadMaskFaceset();
  maskStatus(`${name}: label carried to ${result.written.length} crop(s)` +
    (result.written.length ? ` (${result.written.slice(0, 4).join(", ")}${result.written.length > 4 ? ", ..." : ""})` : ""));
});

$("mk-rank").addEventListener("click", async () => {
  const dir = maskEditor.dir, model = $("mk-model").value;
  if (!model) { showError("no mask model in the workspace: train one with `intracoder mask train`"); return; }
  maskStatus("ranking the crops by the mask net's certainty...");
  const data = await api(`/api/masks/uncertain?${query({dir, mask_model: model, count: $("mk-count").value})}`);
  $("mk-uncertain").replaceChildren(...data.faces.map((f) => {
    const item = element("li", {}, [element("span", {className: "name", textContent: f.name}),
                                    element("span", {className: "score", textContent: Number(f.score).toFixed(3)})]);
    item.dataset.name = f.name;
    return item;
  }));
  markCurrent();
  maskStatus(`${data.faces.length} crops, least certain first`);
});

async function openMasksTab() {
  const models = await api("/api/masks/models");
  const keep = $("mk-model").value;
  $("mk-model").replaceChildren(...models.models.map((m) => element("option", {value: m, textContent: m})));
  if (models.models.includes(keep)) $("mk-model").value = keep;
  if ($("mk-dir").value && $("mk-dir").value !== maskEditor.dir) await loadMaskFaceset();
}
$("tab-masks").addEventListener("click", () => openMasksTab().catch(() => {}));

// --- convert: every mask mode the server knows, and the blend mask over the preview ----------
api("/api/masks/modes").then((data) => {
  const select = $("cv-mask"), keep = select.value || data.default;
  select.replaceChildren(...data.modes.map((m) => element("option", {value: m, textContent: m})));
  select.value = data.modes.includes(keep) ? keep : data.default;
}).catch(() => {});
