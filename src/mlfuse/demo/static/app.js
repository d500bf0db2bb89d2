// mlfuse demo page: plain JavaScript, no dependencies; talks only to the server that served it.
"use strict";

const $ = (id) => document.getElementById(id);
const ROLES = ["structural", "functional"];
const DEFAULT_METHODS = ["mlfuse", "gff", "laplacian", "dwt"];
const state = {
  info: null, structural: null, functional: null, job: null, timer: null,
  shown: 0, zoom: { s: 1, x: 0, y: 0 }, metricsSeq: 0, slider: 50,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

async function api(path, opts = {}) {
  const headers = Object.assign({ "X-Requested-With": "mlfuse-demo" }, opts.headers || {});
  let resp;
  try {
    resp = await fetch(path, Object.assign({}, opts, { headers }));
  } catch (e) {
    throw new Error("the demo server does not answer (was it stopped?)");
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { /* not JSON */ }
  if (!resp.ok || !data || data.error) {
    throw new Error((data && data.error) || `the server answered ${resp.status} ${resp.statusText}`);
  }
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

const mb = (bytes) => (bytes / 2 ** 20).toFixed(1).replace(/\.0$/, "");
const secs = (s) => (s == null ? "—" : s < 10 ? s.toFixed(2) + " s" : s.toFixed(1) + " s");

// ---- sources --------------------------------------------------------------------------------

function describe(img) {
  return `${img.name}: ${img.width}×${img.height}, ${img.color ? "colour" : "gray"}, ${img.bits}-bit`;
}

function renderSources() {
  for (const role of ROLES) {
    const img = state[role];
    const preview = $(`${role}-preview`);
    preview.hidden = !img;
    if (img) preview.src = img.url;
    $(`${role}-info`).textContent = img ? describe(img) + " · replace:" : "Drop an image here or";
  }
  const s = state.structural, f = state.functional;
  if (s && f && (s.width !== f.width || s.height !== f.height)) {
    $("functional-info").textContent += "  (sizes differ)";
  }
}

async function upload(role, file) {
  clearError();
  const limit = state.info.limits.max_upload_bytes;
  if (file.size > 256 * 2 ** 20) { // the server refuses these too, but only after the transfer
    showError(`${file.name}: ${mb(file.size)} MB is over this demo's upload limit of ${mb(limit)} MB ` +
              "(start it with --max-upload-mb N to allow more)");
    return;
  }
  $(`${role}-info`).textContent = `reading ${file.name}…`;
  try {
    const img = await api("/api/images", {
      method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-Filename": encodeURIComponent(file.name) },
    });
    state[role] = img;
    $("pair-select").value = "";
  } catch (e) {
    showError(e.message);
  }
  renderSources();
}

async function loadPair(key) {
  if (!key) return;
  clearError();
  try {
    const pair = await api("/api/pairs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ pair: key }),
    });
    state.structural = pair.structural;
    state.functional = pair.functional;
  } catch (e) {
    showError(e.message);
  }
  renderSources();
}

function setupSources() {
  for (const role of ROLES) {
    const drop = $(`${role}-drop`);
    const input = $(`${role}-file`);
    input.addEventListener("change", () => { if (input.files[0]) upload(role, input.files[0]); input.value = ""; });
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files[0]) upload(role, e.dataTransfer.files[0]);
    });
  }
  $("swap").addEventListener("click", () => {
    [state.structural, state.functional] = [state.functional, state.structural];
    renderSources();
  });
  const select = $("pair-select");
  const groups = new Map();
  for (const p of state.info.pairs) {
    if (!groups.has(p.group)) groups.set(p.group, select.appendChild(el("optgroup", { label: p.group })));
    groups.get(p.group).append(el("option", { value: p.key, text: p.label }));
  }
  select.addEventListener("change", () => loadPair(select.value));
  const lim = state.info.limits;
  $("limits").textContent = `limits: ${mb(lim.max_upload_bytes)} MB per file, ${(lim.max_pixels / 1e6).toFixed(1)} megapixels`;
}

// ---- methods --------------------------------------------------------------------------------

function setupMethods() {
  const box = $("methods");
  for (const m of state.info.methods) {
    const check = el("input", { type: "checkbox", disabled: !m.available, "data-method": m.name });
    check.checked = m.available && DEFAULT_METHODS.includes(m.name);
    const card = el("div", { class: "method" + (m.available ? "" : " disabled"), "data-method": m.name },
      el("label", {}, check, " " + m.name));
    if (m.weights.length > 1) {
      const sel = el("select", { class: "weights", "data-method": m.name, title: "weights" });
      for (const w of m.weights) sel.append(el("option", { value: w.id, text: w.label }));
      card.append(sel);
    } else if (m.weights.length === 1) {
      card.append(el("div", { class: "paper", text: "weights: " + m.weights[0].label }));
    }
    card.append(el("div", { class: "paper", text: m.paper, title: m.paper }));
    if (!m.available) card.append(el("div", { class: "reason", text: m.reason }));
    box.append(card);
  }
}

function chosenMethods() {
  return [...document.querySelectorAll("#methods input[type=checkbox]:checked")].map((cb) => {
    const sel = document.querySelector(`#methods select[data-method="${cb.dataset.method}"]`);
    return { name: cb.dataset.method, weights: sel ? sel.value : null };
  });
}

// ---- jobs and progress ----------------------------------------------------------------------

async function run() {
  clearError();
  if (!state.structural || !state.functional) return showError("choose both images first (structural and functional)");
  const methods = chosenMethods();
  if (!methods.length) return showError("choose at least one method");
  let job;
  try {
    job = await api("/api/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ structural: state.structural.id, functional: state.functional.id, methods,
                             color: $("color").value }),
    });
  } catch (e) {
    return showError(e.message);
  }
  state.job = job;
  state.shown = 0;
  state.zoom = { s: 1, x: 0, y: 0 };
  $("run").disabled = true;
  $("results").replaceChildren(sourcePanel(job.structural, "structural"), sourcePanel(job.functional, "functional"));
  $("results-section").hidden = false;
  $("metrics-section").hidden = true;
  $("metrics-table").replaceChildren();
  update(job);
  poll();
}

function poll() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    try {
      const job = await api(`/api/jobs/${state.job.id}`);
      update(job);
      if (job.state !== "done") poll();
    } catch (e) {
      showError(e.message);
      $("run").disabled = false;
      $("progress").hidden = true;
    }
  }, 300);
}

function update(job) {
  const box = $("progress");
  box.hidden = false;
  box.classList.toggle("busy", job.state !== "done");
  $("progress-bar").style.width = `${(100 * job.done) / job.total}%`;
  let text;
  if (job.state === "queued") text = `waiting for the server: ${job.queue_position} other job(s) ahead`;
  else if (job.state === "running" && job.current)
    text = `running ${job.current} (${job.done + 1} of ${job.total}), ${job.current_elapsed_s.toFixed(1)} s…`;
  else if (job.state === "running") text = `${job.done} of ${job.total} done…`;
  else {
    const failed = job.results.filter((r) => r.error).length;
    text = `done: ${job.total - failed} of ${job.total} methods` + (failed ? `, ${failed} failed` : "");
  }
  $("progress-text").textContent = text;
  const fresh = job.results.slice(state.shown);
  for (const r of fresh) $("results").append(resultPanel(r, job));
  state.shown = job.results.length;
  if (fresh.length) {
    refreshSlider();
    applyZoom();
    if (job.results.some((r) => r.url)) refreshMetrics();
  }
  if (job.state === "done") {
    $("run").disabled = false;
    box.classList.remove("busy");
  }
}

// ---- result panels, synchronised zoom/pan ---------------------------------------------------

function viewport(src, alt, w, h) {
  const img = el("img", { src, alt, draggable: false });
  const vp = el("div", { class: "viewport" }, img);
  vp.style.aspectRatio = `${w} / ${h}`;
  attachZoom(vp);
  return vp;
}

function sourcePanel(img, role) {
  return el("div", { class: "panel source", "data-name": role, "data-url": img.url },
    el("h3", {}, el("span", { text: `${role}: ${img.name}` })),
    viewport(img.url, `${role} source`, img.width, img.height));
}

function resultPanel(r, job) {
  const panel = el("div", { class: "panel result", "data-name": r.method });
  const time = r.error ? "" : secs(r.time_s) + (r.load_s > 0.05 ? ` (+${secs(r.load_s)} load)` : "");
  panel.append(el("h3", {}, el("span", { text: r.method }), el("span", { class: "time", text: time })));
  if (r.error) {
    panel.append(el("div", { class: "failed", text: r.error }));
    return panel;
  }
  panel.dataset.url = r.url;
  panel.append(viewport(r.url, `${r.method} result`, job.structural.width, job.structural.height));
  panel.append(el("a", { href: `${r.url}?download=1`, download: r.download, text: `download ${r.download}` }),
    el("span", { class: "hint", text: ` · weights: ${r.weights}` }));
  return panel;
}

function applyZoom() {
  const { s, x, y } = state.zoom;
  for (const vp of document.querySelectorAll("#results .viewport")) {
    vp.firstChild.style.transform = `translate(${x * 100}%, ${y * 100}%) scale(${s})`;
    vp.classList.toggle("pixels", s >= 4);
  }
}

function clampZoom() {
  const z = state.zoom;
  z.s = Math.min(64, Math.max(1, z.s));
  z.x = Math.min(0, Math.max(1 - z.s, z.x));
  z.y = Math.min(0, Math.max(1 - z.s, z.y));
}

function attachZoom(vp) {
  vp.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = vp.getBoundingClientRect();
    const u = (e.clientX - rect.left) / rect.width, v = (e.clientY - rect.top) / rect.height;
    const z = state.zoom;
    const s2 = Math.min(64, Math.max(1, z.s * Math.exp(-e.deltaY * 0.002)));
    z.x = u - ((u - z.x) / z.s) * s2;
    z.y = v - ((v - z.y) / z.s) * s2;
    z.s = s2;
    clampZoom();
    applyZoom();
  }, { passive: false });
  let last = null;
  vp.addEventListener("pointerdown", (e) => {
    last = { x: e.clientX, y: e.clientY };
    vp.setPointerCapture(e.pointerId);
    vp.classList.add("dragging");
  });
  vp.addEventListener("pointermove", (e) => {
    if (!last) return;
    const rect = vp.getBoundingClientRect();
    state.zoom.x += (e.clientX - last.x) / rect.width;
    state.zoom.y += (e.clientY - last.y) / rect.height;
    last = { x: e.clientX, y: e.clientY };
    clampZoom();
    applyZoom();
  });
  const end = () => { last = null; vp.classList.remove("dragging"); };
  vp.addEventListener("pointerup", end);
  vp.addEventListener("pointercancel", end);
  vp.addEventListener("dblclick", resetZoom);
}

function resetZoom() {
  state.zoom = { s: 1, x: 0, y: 0 };
  applyZoom();
}

// ---- comparison slider ----------------------------------------------------------------------

function refreshSlider() {
  const panels = [...document.querySelectorAll("#results .panel[data-url]")];
  for (const [id, fallback] of [["slider-a", 0], ["slider-b", panels.length - 1]]) {
    const sel = $(id);
    const keep = sel.value;
    sel.replaceChildren(...panels.map((p) => el("option", { value: p.dataset.url, text: p.dataset.name })));
    sel.value = panels.some((p) => p.dataset.url === keep) ? keep : panels[Math.max(0, fallback)].dataset.url;
  }
  drawSlider();
}

function drawSlider() {
  $("compare-a").src = $("slider-a").value;
  $("compare-b").src = $("slider-b").value;
  $("compare-a").style.clipPath = `inset(0 ${100 - state.slider}% 0 0)`;
  $("compare-handle").style.left = `${state.slider}%`;
}

function setupSlider() {
  const box = $("compare");
  let dragging = false;
  const move = (e) => {
    const rect = box.getBoundingClientRect();
    state.slider = Math.min(100, Math.max(0, (100 * (e.clientX - rect.left)) / rect.width));
    drawSlider();
  };
  box.addEventListener("pointerdown", (e) => { dragging = true; box.setPointerCapture(e.pointerId); move(e); });
  box.addEventListener("pointermove", (e) => { if (dragging) move(e); });
  box.addEventListener("pointerup", () => { dragging = false; });
  $("slider-a").addEventListener("change", drawSlider);
  $("slider-b").addEventListener("change", drawSlider);
  for (const radio of document.querySelectorAll("input[name=view]")) {
    radio.addEventListener("change", () => {
      const slider = radio.value === "slider" && radio.checked;
      $("slider-view").hidden = !slider;
      $("results").hidden = slider;
      $("zoom-reset").hidden = slider;
    });
  }
  $("zoom-reset").addEventListener("click", resetZoom);
}

// ---- metrics table --------------------------------------------------------------------------

async function refreshMetrics() {
  if (!state.job) return;
  const seq = ++state.metricsSeq;
  const profile = $("profile").value;
  const slow = $("slow").checked ? 1 : 0;
  $("profile-reference").textContent = "computing metrics…";
  let data;
  try {
    data = await api(`/api/jobs/${state.job.id}/metrics?profile=${encodeURIComponent(profile)}&slow=${slow}`);
  } catch (e) {
    return showError(e.message);
  }
  if (seq !== state.metricsSeq) return; // a newer request superseded this one
  $("profile-reference").textContent = data.reference +
    (data.skipped_slow.length ? ` · not computed: ${data.skipped_slow.join(", ")} (tick "include slow metrics")` : "");
  const head = el("tr", {}, el("th", { text: "method" }), el("th", { text: "time" }),
    ...data.metrics.map((m) => el("th", { text: `${m.name} ${m.higher_is_better ? "↑" : "↓"}`,
                                          title: m.higher_is_better ? "higher is better" : "lower is better" })));
  const rows = Object.entries(data.rows).map(([method, values]) => el("tr", { "data-method": method },
    el("td", { text: method }), el("td", { text: secs(data.times[method]) }),
    ...data.metrics.map((m) => {
      const v = values[m.name];
      const best = (data.best[m.name] || []).includes(method);
      return el("td", { class: best ? "best" : "", text: v == null ? "—" : (best ? "★ " : "") + fmt(v) });
    })));
  $("metrics-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows));
  $("metrics-section").hidden = false;
  if (data.problems.length) showError(data.problems.join("\n"));
}

function fmt(v) {
  const a = Math.abs(v);
  return a >= 1000 ? v.toFixed(0) : a >= 100 ? v.toFixed(2) : v.toFixed(4);
}

function setupMetrics() {
  const sel = $("profile");
  for (const p of state.info.profiles) sel.append(el("option", { value: p.name, text: p.name, title: p.reference }));
  sel.value = "cddfuse";
  sel.addEventListener("change", refreshMetrics);
  $("slow").addEventListener("change", refreshMetrics);
}

// ---- start ----------------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    return showError(e.message);
  }
  $("version").textContent = `mlfuse ${state.info.version}`;
  setupSources();
  setupMethods();
  setupSlider();
  setupMetrics();
  $("run").addEventListener("click", run);
  const sample = state.info.pairs.find((p) => p.key === "sample");
  if (sample && !state.structural && !state.functional) {
    $("pair-select").value = sample.key;
    await loadPair(sample.key);
  }
  document.body.dataset.ready = "1";
}

start();
