// discdiff demo page: posts a request to /api/generate, reads the server-sent events it streams
// (queued*, start, step*, done | error), keeps every state as a frame and plays the frames back at
// the chosen pace, so even a sampler faster than the eye can be watched; the slider replays them.
// No framework, no build step. window.discdiffDemo exposes what arrived, for tests.
"use strict";

const $ = (id) => document.getElementById(id);
const PROTEIN_GROUPS = { A: "hyd", I: "hyd", L: "hyd", M: "hyd", F: "aro", V: "hyd", W: "aro", K: "pos",
  R: "pos", H: "pos", D: "neg", E: "neg", S: "pol", T: "pol", N: "pol", Q: "pol", C: "cys", G: "gly", P: "gly",
  Y: "aro" };
const FIELDS = ["length", "steps", "num_samples", "seed", "temperature", "top_k", "top_p", "threshold",
  "block_length", "guidance"];
const INTEGER = new Set(["length", "steps", "num_samples", "seed", "top_k", "block_length"]);

const demo = { info: null, events: [], frames: [], shown: -1, streaming: false, controller: null, final: null,
  rows: [], known: null, knownRows: null, length: 0, numSamples: 0, prompts: null, perPrompt: 1 };
window.discdiffDemo = demo;

function setStatus(status, text) {
  document.body.dataset.status = status;
  $("status").textContent = text || status;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// ------------------------------------------------------------------ the model and the form

async function init() {
  const resp = await fetch("/api/info");
  const info = await resp.json();
  demo.info = info;
  const params = info.parameters ? ` · ${(info.parameters / 1e6).toFixed(2)} M parameters` : "";
  $("model-info").textContent = `${info.name} · ${info.modality} · ${info.vocab_size} tokens · ` +
    `${info.graph} graph, ${info.parameterization}${params} · context ${info.context}`;
  for (const name of info.samplers) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    $("sampler").append(opt);
  }
  $("sampler").value = info.defaults.sampler;
  $("label-field").hidden = !info.labels;  // a class-conditional model: pick its class
  $("record-length-field").hidden = !info.records;  // a record model: where its records end
  if (info.records && info.records.auto_length) $("record_length").placeholder = "model's, or auto";
  for (const [i, name] of (info.labels || []).entries()) {
    const opt = document.createElement("option");
    opt.value = String(i);
    opt.textContent = name;
    $("label").append(opt);
  }
  $("steps").value = info.defaults.steps;
  $("steps").max = info.limits.max_steps;
  $("num_samples").max = info.limits.max_samples;
  $("length").max = info.limits.max_length;
  for (const ex of info.examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${ex.label}: ${ex.template || "(empty)"}${ex.length ? ` → ${ex.length}` : ""}`;
    b.addEventListener("click", () => {
      $("template").value = ex.template;
      $("length").value = ex.length || "";
    });
    $("examples").append(b);
  }
  if (info.examples.length) {
    $("template").value = info.examples[0].template;
    $("length").value = info.examples[0].length || "";
  }
  if (info.modality === "image") {  // whole images: nothing to type, the form hides the template
    document.body.classList.add("image");
    $("template").disabled = $("length").disabled = true;
  }
  onSamplerChange();
  setStatus("idle", "ready");
}

function onSamplerChange() {
  const sampler = $("sampler").value;
  document.body.classList.toggle("confidence", sampler === "confidence");
  const records = demo.info && demo.info.records;
  $("sampler-note").textContent = sampler === "first_hitting"
    ? "first_hitting reveals one token per model call: steps are ignored" +
      (records ? "; every record stays well formed" : "")
    : records ? "each record is cut at its first end (·); first_hitting keeps every record well formed" : "";
}

function readForm() {
  const body = { template: $("template").value, sampler: $("sampler").value };
  for (const name of FIELDS) {
    const raw = $(name).value.trim();
    if (raw === "" || $(name).closest(".confidence-only") && body.sampler !== "confidence") continue;
    body[name] = INTEGER.has(name) ? Number.parseInt(raw, 10) : Number.parseFloat(raw);
  }
  if (demo.info.modality === "image") delete body.template;
  if (demo.info.labels) body.label = Number.parseInt($("label").value, 10);
  const recordLength = $("record_length").value.trim();  // empty: the model decides where each record ends
  if (demo.info.records && recordLength) {
    body.record_length = /^\d+$/.test(recordLength) ? Number.parseInt(recordLength, 10) : recordLength;
  }
  // several prompts, one per line: one batch, rows grouped by prompt (num_samples rows each)
  const lines = $("prompts").value.split("\n").map((l) => l.replace(/\r$/, "")).filter((l) => l.length);
  demo.prompts = lines.length && demo.info.modality !== "image" ? lines : null;
  demo.perPrompt = body.num_samples || 1;
  if (demo.prompts) {
    body.prompts = demo.prompts;
    delete body.template;
    body.length ??= demo.info.limits.max_length;
  }
  return body;
}

// ------------------------------------------------------------------ streaming

async function start(event) {
  event.preventDefault();
  if (demo.streaming) return;
  showError("");
  demo.events = [];
  demo.frames = [];
  demo.shown = -1;
  demo.final = null;
  $("final").replaceChildren();
  demo.controller = new AbortController();
  demo.streaming = true;
  $("start").disabled = true;
  $("stop").disabled = false;
  setStatus("sending", "sending…");
  try {
    const resp = await fetch("/api/generate", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(readForm()), signal: demo.controller.signal });
    if (!resp.ok) {
      const text = await resp.text();
      let message = text;
      try { message = JSON.parse(text).error; } catch (_) { /* not JSON */ }
      throw new Error(`${resp.status}: ${message}`);
    }
    await readEvents(resp.body.getReader());
  } catch (err) {
    if (err.name === "AbortError") setStatus("stopped", "stopped");
    else { showError(err.message); setStatus("error", "error"); }
  } finally {
    demo.streaming = false;
    $("start").disabled = false;
    $("stop").disabled = true;
    tick();
  }
}

async function readEvents(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(kind, JSON.parse(data));
    }
  }
}

function onEvent(kind, data) {
  demo.events.push({ kind, step: data.step, masked: data.masked, nfe: data.nfe });
  if (kind === "queued") {
    setStatus("queued", `queued: ${data.position} ahead of you`);
  } else if (kind === "start") {
    demo.length = data.length;
    demo.numSamples = data.num_samples;
    demo.known = data.known;
    demo.knownRows = data.known_rows ?? null;  // per row: several prompts of different lengths
    const state = new Int32Array(data.state.flat());
    demo.frames.push({ state, step: 0, nfe: 0, elapsed: 0, masked: data.masked, changes: [] });
    demo.totalSteps = data.total_steps ?? data.steps;  // a block model: steps per block x blocks
    demo.sampler = data.sampler;
    buildRows();
    setStatus("running", "denoising");
    tick();
  } else if (kind === "step" || kind === "done") {
    const last = demo.frames[demo.frames.length - 1];
    const state = last.state.slice();
    for (const [r, p, id] of data.changes) state[r * demo.length + p] = id;
    if (kind === "step" || data.changes.length) {
      const masked = data.masked || countMasked(state);
      demo.frames.push({ state, step: data.step ?? last.step, nfe: data.nfe, elapsed: data.elapsed, masked,
        changes: data.changes });
    }
    if (kind === "done") demo.final = data;
    tick();
  } else if (kind === "error") {
    showError(data.message);
    setStatus("error", "error");
  }
}

function countMasked(state) {
  const out = [];
  for (let r = 0; r < demo.numSamples; r++) {
    let n = 0;
    for (let p = 0; p < demo.length; p++) if (state[r * demo.length + p] === demo.info.mask_id) n++;
    out.push(n);
  }
  return out;
}

// ------------------------------------------------------------------ playback and drawing

let timer = null;
function tick() {
  if (timer !== null) return;
  const target = demo.frames.length - 1;
  if (demo.shown < target) {
    const delay = Number($("delay").value);
    const next = delay === 0 ? target : demo.shown + 1;
    draw(next);
    timer = setTimeout(() => { timer = null; tick(); }, delay);
    return;
  }
  if (!demo.streaming && demo.frames.length) finish();
}

function finish() {
  const n = demo.frames.length;
  $("scrub").max = Math.max(n - 1, 0);
  $("scrub").value = demo.shown;
  $("scrub").disabled = n < 2;
  if (demo.final && document.body.dataset.status !== "done") {
    const f = demo.final;
    setStatus("done", "done");
    $("step").textContent = `${f.steps_taken} steps`;
    $("nfe").textContent = `${f.nfe} model calls`;
    $("elapsed").textContent = `${f.elapsed.toFixed(2)} s`;
    showFinal(f);
  }
}

function buildRows() {
  const rows = $("rows");
  rows.replaceChildren();
  demo.rows = [];
  const image = demo.info.image;
  const holder = image ? document.createElement("div") : rows;
  if (image) { holder.className = "images"; rows.append(holder); }
  for (let r = 0; r < demo.numSamples; r++) {
    if (image) {
      const canvas = document.createElement("canvas");
      canvas.width = image.width;
      canvas.height = image.height;
      holder.append(canvas);
      demo.rows.push({ canvas, ctx: canvas.getContext("2d") });
      continue;
    }
    const div = document.createElement("div");
    div.className = "row seq" + (["protein", "dna"].includes(demo.info.modality) ? " residues" : "");
    div.title = rowTitle(r);
    const spans = [];
    for (let p = 0; p < demo.length; p++) {
      const s = document.createElement("span");
      spans.push(s);
      div.append(s);
    }
    rows.append(div);
    demo.rows.push({ div, spans, ids: new Int32Array(demo.length).fill(-1) });
  }
}

function tokenClass(id, p, r) {
  const info = demo.info;
  const classes = [];
  if (demo.knownRows ? demo.knownRows[r][p] : demo.known[p]) classes.push("known");
  if (id === info.mask_id) return [...classes, "mask"].join(" ");
  if (info.special_ids.includes(id)) classes.push("special");
  if (info.records && id === info.records.eos_id) classes.push("end");  // the record's end, then its padding
  const text = info.tokens[id];
  if (info.modality === "protein" && PROTEIN_GROUPS[text]) classes.push("g-" + PROTEIN_GROUPS[text]);
  if (info.modality === "dna" && text.length === 1) classes.push("nt-" + text);
  return classes.join(" ");
}

function tokenText(id) {
  if (id === demo.info.mask_id) return "░";
  if (demo.info.records && id === demo.info.records.eos_id) return "·";
  const text = demo.info.tokens[id];
  return text === "\n" ? "↵\n" : text;
}

function draw(index) {
  const frame = demo.frames[index];
  demo.shown = index;
  const fresh = new Set(frame.changes.map(([r, p]) => r * demo.length + p));
  for (let r = 0; r < demo.numSamples; r++) {
    const row = demo.rows[r];
    const offset = r * demo.length;
    if (row.canvas) { drawImage(row, frame.state.subarray(offset, offset + demo.length)); continue; }
    for (let p = 0; p < demo.length; p++) {
      const id = frame.state[offset + p];
      const span = row.spans[p];
      if (row.ids[p] !== id) {
        row.ids[p] = id;
        span.textContent = tokenText(id);
        span.className = tokenClass(id, p, r);
      }
      span.classList.toggle("fresh", fresh.has(offset + p));
    }
  }
  const totalMasked = frame.masked.reduce((a, b) => a + b, 0);
  $("step").textContent = `step ${frame.step}` + (demo.sampler === "first_hitting" ? "" : ` / ${demo.totalSteps}`);
  $("nfe").textContent = `${frame.nfe} model calls`;
  $("elapsed").textContent = `${frame.elapsed.toFixed(2)} s`;
  $("masked").textContent = demo.info.mask_id === null ? "" : `${totalMasked} masked`;
  $("scrub-label").textContent = `frame ${index} of ${demo.frames.length - 1}`;
  drawChart(index);
}

function drawImage(row, ids) {
  const { width, height } = demo.info.image;
  const img = row.ctx.createImageData(width, height);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const masked = id === demo.info.mask_id;
    const grey = masked ? 0 : Number(demo.info.tokens[id]);
    img.data.set(masked ? [214, 51, 132, 255] : [grey, grey, grey, 255], 4 * i);
  }
  row.ctx.putImageData(img, 0, 0);
}

function drawChart(index) {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const frames = demo.frames;
  const values = demo.info.mask_id === null
    ? frames.map((f) => f.changes.length)
    : frames.map((f) => f.masked.reduce((a, b) => a + b, 0));
  const top = Math.max(...values, 1);
  const x = (i) => 4 + (w - 8) * (frames.length > 1 ? i / (frames.length - 1) : 0);
  const y = (v) => h - 6 - (h - 18) * (v / top);
  ctx.strokeStyle = "#2d5bd7";
  ctx.lineWidth = 2;
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
  ctx.fillStyle = "#d6336c";
  ctx.beginPath();
  ctx.arc(x(index), y(values[index]), 4, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "#6b6b70";
  ctx.font = "11px sans-serif";
  ctx.fillText(demo.info.mask_id === null ? "tokens changed per step" : "masked tokens, by step", 8, 12);
}

function rowTitle(r) {
  if (!demo.prompts) return `sample ${r + 1}`;
  const k = Math.floor(r / demo.perPrompt);
  return `prompt ${k + 1} (${JSON.stringify(demo.prompts[k])}) · sample ${(r % demo.perPrompt) + 1}`;
}

function showFinal(f) {
  const out = $("final");
  out.replaceChildren();
  (f.text || []).forEach((text, r) => {
    if (text === null) return;
    const div = document.createElement("div");
    div.className = "row";
    const h = document.createElement("h3");
    h.textContent = `${rowTitle(r)} · ${f.nfe_per_row[r]} model calls · seed ${f.seed}, row ${r}`;
    const record = f.records && f.records[r];  // a record model: the row cut at its first EOS
    if (record) {
      const tag = document.createElement("span");
      tag.className = "record" + (record.well_formed ? "" : " bad");
      tag.textContent = ` · length ${record.length} · ${record.well_formed ? "well formed" : "not well formed"}`;
      h.append(tag);
    }
    const pre = document.createElement("pre");
    pre.className = "final-text";
    pre.textContent = text;
    div.append(h, pre);
    out.append(div);
  });
}

function stop() {
  if (demo.controller) demo.controller.abort();
}

function scrub() {
  if (demo.streaming) return;
  const index = Number($("scrub").value);
  draw(index);
  if (demo.final) $("status").textContent = index === demo.frames.length - 1 ? "done" : "done · replaying";
}

document.addEventListener("DOMContentLoaded", () => {
  $("controls").addEventListener("submit", start);
  $("stop").addEventListener("click", stop);
  $("sampler").addEventListener("change", onSamplerChange);
  $("scrub").addEventListener("input", scrub);
  $("delay").addEventListener("input", () => {
    $("delay-label").textContent = $("delay").value === "0" ? "as fast as it comes" : `${$("delay").value} ms`;
  });
  for (const id of ["template", "prompts"]) {
    $(id).addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("controls").requestSubmit();
    });
  }
  init().catch((err) => { showError(`could not load the model info: ${err.message}`); setStatus("error"); });
});
