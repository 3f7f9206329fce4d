// The demo page: posts the image and tweet to /predict as multipart and shows label, probabilities and evidence.
"use strict";

const $ = (id) => document.getElementById(id);
let chosenFile = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setFile(file) {
  if (!file) return;
  chosenFile = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  showError("");
}

function tokenSpan(tok) {
  const span = document.createElement("span");
  span.className = "tok";
  span.textContent = tok.token;  // a whole word: the server merged the tokenizer's pieces
  const a = Math.min(1, Math.abs(tok.score));
  span.style.background = tok.score >= 0 ? `rgba(26,127,55,${a * 0.6})` : `rgba(198,40,40,${a * 0.6})`;
  span.title = `score ${tok.score.toFixed(3)}`;
  return span;
}

function render(res) {
  $("label").textContent = res.label;
  const body = $("probs").querySelector("tbody");
  body.replaceChildren();
  for (const [name, p] of Object.entries(res.probabilities)) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(p * 200)}px`;
    row.insertCell().appendChild(bar);
    row.insertCell().textContent = p.toFixed(3);
  }
  const ev = res.evidence;
  const abl = ev.modality_ablation;
  const who = {
    both: "Driven by both modalities about equally",
    neither: "Neither modality alone carries this prediction",
    image: "Driven mostly by the image",
    text: "Driven mostly by the text",
  }[ev.dominant_modality];
  const signed = (x) => (x >= 0 ? "+" : "−") + Math.abs(x).toFixed(3);
  $("driver").textContent = `${who}: removing the image changes p(${res.label}) by ${signed(-abl.image)}, ` +
    `removing the text by ${signed(-abl.text)}.`;
  if (ev.gate) {
    $("gate").hidden = false;
    $("gate").textContent = ev.gate.summary;
  } else {
    $("gate").hidden = true;
  }
  const overlay = $("overlay");
  if (ev.image_overlay_png) {
    overlay.src = ev.image_overlay_png;
    overlay.hidden = false;
    $("overlay-caption").textContent = ev.image_map === "attention"
      ? "Left: the center crop the model saw. Right: where the text's attention fell on it (text → image attention)."
      : "Left: the center crop the model saw. Right: the regions that moved the prediction most (|gradient × input|).";
  } else {
    overlay.hidden = true;
    $("overlay-caption").textContent = "This model does not read the image.";
  }
  const tokens = $("tokens");
  tokens.replaceChildren();
  // a space between words, so the text reads (and copies) as words
  if (ev.tokens && ev.tokens.length) ev.tokens.forEach((t) => tokens.append(tokenSpan(t), " "));
  else tokens.textContent = ev.tokens ? "(no tokens left after cleaning)" : "This model does not read the text.";
  $("timing").textContent = `${res.model.name}: ${res.model.description}; ` +
    `server time ${res.timing_ms.total.toFixed(0)} ms`;
  $("result").hidden = false;
  $("result").dataset.label = res.label;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const text = $("text").value;
  if (!chosenFile) return showError("Choose an image first.");
  if (!text.trim()) return showError("Type the tweet text.");
  const form = new FormData();
  form.append("image", chosenFile, chosenFile.name || "image");
  form.append("text", text);
  form.append("explain", "true");
  form.append("overlay", "true");
  $("submit").disabled = true;
  try {
    const resp = await fetch("/predict", { method: "POST", body: form });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.detail || `HTTP ${resp.status}`);
    render(data);
  } catch (err) {
    showError(`Prediction failed: ${err.message}`);
  } finally {
    $("submit").disabled = false;
  }
}

function init() {
  const drop = $("drop");
  $("image").addEventListener("change", (e) => setFile(e.target.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("image").click(); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => setFile(e.dataTransfer.files[0]));
  $("form").addEventListener("submit", submit);
  fetch("/health").then((r) => r.json()).then((h) => {
    $("model-info").textContent = `Model: ${h.model.name} (${h.model.description}), ` +
      `encoders ${h.model.image_encoder} + ${h.model.text_encoder}`;
  }).catch(() => { $("model-info").textContent = "model info unavailable"; });
}

init();
