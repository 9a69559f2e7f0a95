// The page keeps its state in the URL: /?q=a+cat runs that search, /?like=12 shows images like #12, and the
// browser's back and forward buttons move between them. Same-origin requests only; a token, if the server
// has one, travels in an HttpOnly cookie that the server set when the page was opened with ?token=.
const $ = (id) => document.getElementById(id);

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function show(body) {
  const results = body.results;
  $("like").hidden = !body.like;
  $("like").textContent = body.like ? "More like " + body.like.name : "";
  $("error").textContent = results.length ? "" : "no results";
  $("results").replaceChildren(...results.map((r) => {
    const card = document.createElement("div");
    card.className = "hit";
    card.dataset.id = r.id;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = r.name;
    img.src = "/api/thumb/" + r.id;
    const meta = document.createElement("div");
    meta.className = "meta";
    const name = document.createElement("span");
    name.textContent = r.caption || r.name;  // a collection embedded by pictext embed has captions
    name.title = r.name;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = r.score.toFixed(3);
    meta.append(name, score);
    if (r.url) {  // the server sends http(s) URLs only
      const source = document.createElement("a");
      source.className = "source";
      source.href = r.url;
      source.textContent = "source";
      source.target = "_blank";
      source.rel = "noopener noreferrer";
      source.addEventListener("click", (e) => e.stopPropagation());
      meta.append(source);
    }
    card.append(img, meta);
    card.addEventListener("click", () => navigate({ like: String(r.id), k: $("k").value }));
    return card;
  }));
}

async function run(request) {
  $("error").textContent = "";
  try { show(await request()); } catch (e) {
    $("results").replaceChildren();
    $("like").hidden = true;
    $("error").textContent = e.message;
  }
}

// Run what the URL asks for; `navigate` also records it in the history.
function load() {
  const params = new URLSearchParams(location.search);
  const k = params.get("k") || "24";
  $("k").value = k;
  if (params.has("like")) {
    run(() => call("/api/similar/" + encodeURIComponent(params.get("like")) + "?k=" + encodeURIComponent(k)));
  } else if (params.has("q")) {
    $("q").value = params.get("q");
    run(() => call("/api/search?" + new URLSearchParams({ q: params.get("q"), k })));
  } else {
    $("results").replaceChildren();
    $("like").hidden = true;
  }
}

function navigate(state) {
  history.pushState(null, "", "/?" + new URLSearchParams(state));
  load();
}

window.addEventListener("popstate", load);

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  navigate({ q: $("q").value, k: $("k").value });
});

$("upload").addEventListener("change", () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("k").value);
  history.pushState(null, "", "/");  // an uploaded image has no URL; back returns to the search before it
  run(() => call("/api/search/image", { method: "POST", body: form }));
});

$("classify-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("classify-error").textContent = "";
  const file = $("classify-file").files[0];
  if (!file) { $("classify-error").textContent = "choose an image first"; return; }
  const form = new FormData();
  form.append("file", file);
  form.append("labels", $("labels").value);
  try {
    const body = await call("/api/classify", { method: "POST", body: form });
    $("classify-results").replaceChildren(...body.labels.map((item) => {
      const row = document.createElement("tr");
      const label = document.createElement("td");
      label.textContent = item.label;
      const prob = document.createElement("td");
      prob.className = "prob";
      prob.textContent = (100 * item.prob).toFixed(1) + "%";
      const cell = document.createElement("td");
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = (200 * item.prob) + "px";
      cell.append(bar);
      row.append(label, prob, cell);
      return row;
    }));
  } catch (e) { $("classify-error").textContent = e.message; }
});

// Generate: the server streams one JSON line per frame; Cancel aborts the request, which stops the job.
// Each method's settings, their defaults and the page's limits come from the server (its settings dataclasses).
let generation = null;
let methodSettings = {};
const FIELDS = ["steps", "size", "samples", "guidance"];
const KEPT = 8; // DALL-E pictures shown, best CLIP score first

async function runGeneration() {
  $("generate-error").textContent = "";
  $("generate-download").hidden = true;
  const method = $("method").value;
  const offered = methodSettings[method] || {};
  const params = new URLSearchParams({ method, prompt: $("prompt").value, seed: $("seed").value });
  for (const id of FIELDS) if (offered[id] && $(id).value !== "") params.set(id, $(id).value);
  if (offered.frame_every) params.set("frame_every", Math.max(1, Math.round(Number($("steps").value) / 20)));
  if (offered.keep) params.set("keep", Math.min(KEPT, Number($("samples").value)));
  generation = new AbortController();
  $("generate-run").disabled = true;
  $("generate-cancel").disabled = false;
  $("generate-status").dataset.frames = "0";
  try {
    const response = await fetch("/api/generate?" + params, { signal: generation.signal });
    if (!response.ok) throw new Error((await response.json()).error || response.statusText);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        showLine(JSON.parse(buffer.slice(0, newline)));
        buffer = buffer.slice(newline + 1);
      }
    }
  } catch (e) {
    if (e.name === "AbortError") $("generate-status").textContent = "cancelled";
    else $("generate-error").textContent = e.message;
  } finally {
    generation = null;
    $("generate-run").disabled = false;
    $("generate-cancel").disabled = true;
  }
}

function scored(line) {  // a picture without a CLIP score (a model without an image encoder) says none
  return line.clip_score === null ? "" : `, CLIP score ${line.clip_score.toFixed(3)}`;
}

function showLine(line) {
  const status = $("generate-status");
  if (line.image) {
    $("generate-frame").src = line.image;
    $("generate-frame").hidden = false;
  }
  if (line.type === "frame") {
    status.dataset.frames = String(Number(status.dataset.frames) + 1);
    const what = { dalle: "kept picture", unclip: "picture" }[$("method").value] || "step";
    status.textContent = `${what} ${line.step} of ${line.steps}${scored(line)}`;
  } else if (line.type === "done") {
    status.textContent = `done${scored(line)}`;
    const link = $("generate-download");
    link.href = line.image;
    link.download = line.name;
    link.hidden = false;
  } else if (line.type === "cancelled") {
    status.textContent = "cancelled";
  } else if (line.type === "error") {
    $("generate-error").textContent = line.message;
  }
}

$("generate-form").addEventListener("submit", (event) => { event.preventDefault(); runGeneration(); });
$("generate-cancel").addEventListener("click", () => { if (generation) generation.abort(); });
// Each method shows the fields it takes, with its own defaults and the page's limits.
function showMethodFields() {
  const offered = methodSettings[$("method").value] || {};
  for (const id of FIELDS) {
    const spec = offered[id];
    $(id).parentElement.hidden = !spec;
    if (!spec) continue;
    $(id).value = spec.default === null ? "" : spec.default;
    if (spec.low !== null) $(id).min = spec.low;
    if (spec.high !== null) $(id).max = spec.high;
  }
  $("unclip-extra").hidden = $("method").value !== "unclip";
}

// unCLIP's variations of one uploaded picture, and interpolations between two: the pictures come back at once.
async function drawUnclip(url, files, n, button) {
  $("unclip-error").textContent = "";
  if (files.some((f) => !f)) { $("unclip-error").textContent = "choose the picture(s) first"; return; }
  const form = new FormData();
  for (const [name, file] of files.map((f, i) => [files.length === 1 ? "file" : "ab"[i], f])) form.append(name, file);
  form.append("n", n);
  form.append("seed", $("seed").value);
  form.append("guidance", $("guidance").value);
  button.disabled = true;
  try {
    const body = await call(url, { method: "POST", body: form });
    $("unclip-results").replaceChildren(...body.images.map((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = "picture " + (i + 1);
      return img;
    }));
  } catch (e) { $("unclip-error").textContent = e.message; } finally { button.disabled = false; }
}
$("vary-form").addEventListener("submit", (event) => {
  event.preventDefault();
  drawUnclip("/api/unclip/vary", [$("vary-file").files[0]], $("vary-n").value, $("vary-run"));
});
$("interpolate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const files = [$("interpolate-a").files[0], $("interpolate-b").files[0]];
  drawUnclip("/api/unclip/interpolate", files, $("interpolate-n").value, $("interpolate-run"));
});
$("method").addEventListener("change", showMethodFields);
call("/api/generate/status").then((s) => {
  if (!s.available) {
    $("generate-status").textContent = s.reason;
    $("generate-run").disabled = true;
    return;
  }
  methodSettings = s.settings;
  const names = { "vqgan-clip": "VQGAN+CLIP", dalle: "DALL-E", unclip: "unCLIP" };
  $("method").replaceChildren(...s.methods.map((m) => new Option(names[m] || m, m)));
  showMethodFields();
}).catch(() => {});

for (const name of ["search", "classify", "generate"]) {
  $("tab-" + name).addEventListener("click", () => {
    for (const other of ["search", "classify", "generate"]) {
      $(other + "-view").hidden = other !== name;
      $("tab-" + other).classList.toggle("on", other === name);
    }
  });
}

call("/api/status").then((s) => { $("status").textContent = s.images + " images indexed"; }).catch(() => {});
load();
