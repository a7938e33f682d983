// cnnlens app: map controls, the explain form, the computation bar, sortable tables. No framework, no build step.
// Everything that comes from the store or the user is put into the page as text (textContent), never as markup.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: `the app answered ${response.status}` }; }
  return { status: response.status, data };
}

// ---- the map look: view, sign, colormap, opacity, colour bar -------------------------------------------------
function setupLook() {
  const form = $("#look");
  if (!form) return;
  const weight = ["masked_image", "alpha_scaling"];
  const apply = () => {
    const view = form.view.value;
    const allOption = $("option[value=all]", form.sign);
    allOption.disabled = weight.includes(view);
    if (allOption.disabled && form.sign.value === "all") form.sign.value = "absolute";
    const look = { view, sign: form.sign.value, cmap: form.cmap.value, alpha: form.alpha.value };
    const query = new URLSearchParams(look).toString();
    for (const img of $$("img[data-map]")) img.src = `${img.dataset.src}&${query}`;
    $("#colorbar").src = `/colorbar.png?${new URLSearchParams({ sign: look.sign, cmap: look.cmap, view }).toString()}`;
    const heat = !weight.includes(view);
    $(".bar-low", form).textContent = look.sign === "all" && heat ? "−1 against" : "0";
    $(".bar-high", form).textContent = look.sign === "all" && heat ? "+1 for" : "1";
    $(".bar-caption", form).textContent = heat ? `normalised attribution (${look.sign})` : "weight";
    const url = new URL(window.location.href);
    for (const [k, v] of Object.entries(look)) url.searchParams.set(k, v);
    window.history.replaceState(null, "", url);
  };
  form.addEventListener("change", apply);
  form.alpha.addEventListener("input", apply);
  form.addEventListener("submit", (e) => e.preventDefault());
  apply();
}

// ---- the one computation at a time: progress, cancel, show the result ---------------------------------------
let polling = false;

function showJob(job) {
  const bar = $("#job");
  if (!bar || !job) return;
  bar.hidden = false;
  bar.dataset.state = job.state;
  $(".job-title", bar).textContent = job.title;
  const progress = $(".job-progress", bar);
  if (job.total) { progress.max = job.total; progress.value = Math.min(job.passes, job.total); }
  else if (job.state === "running") progress.removeAttribute("value");
  else { progress.max = 1; progress.value = 1; }
  progress.hidden = job.state !== "running";
  const passes = `${job.passes.toLocaleString()} model pass${job.passes === 1 ? "" : "es"}`;
  const state = job.state === "running" ? `${passes} · ${job.seconds.toFixed(1)} s`
    : job.state === "done" ? `done: ${passes} in ${job.seconds.toFixed(1)} s` : job.message;
  // shown at once, stored behind: a failed write is said here (the map is then computed again when asked)
  const failed = job.stored && job.stored.startsWith("not stored");
  $(".job-state", bar).textContent = failed ? `${state} · ${job.stored}` : state;
  bar.dataset.stored = job.stored || "";
  $(".job-cancel", bar).hidden = job.state !== "running";
  const link = $(".job-link", bar);
  link.hidden = !(job.state === "done" && job.link);
  if (job.link) link.href = job.link;
}

async function poll(reloadWhenDone) {
  if (polling) return;
  polling = true;
  try {
    for (;;) {
      const response = await fetch("/api/job?wait=0.5");  // answers at once when the computation ends
      const { job } = await response.json();
      showJob(job);
      if (!job || job.state !== "running") {
        if (job && job.state === "done" && reloadWhenDone) {
          const here = new URL(window.location.href);
          const there = job.link ? new URL(job.link, here) : here;
          for (const k of ["view", "sign", "cmap", "alpha"]) {
            if (here.searchParams.has(k)) there.searchParams.set(k, here.searchParams.get(k));
          }
          window.location.assign(there.toString());
        }
        return job;
      }
    }
  } finally {
    polling = false;
  }
}

async function watchStoring(number) {
  for (let i = 0; i < 240; i++) {  // until the result is stored, or its write failed (then said on the bar)
    await new Promise((resolve) => setTimeout(resolve, 250));
    const { job } = await (await fetch("/api/job")).json();
    if (!job || job.number !== number || job.stored !== "storing") {
      if (job && job.number === number) showJob(job);
      return;
    }
  }
}

function setupJob() {
  const bar = $("#job");
  if (!bar) return;
  const job = JSON.parse(bar.dataset.job || "null");
  // a computation that ended a while ago is not news any more
  if (job && !(job.state === "done" && job.ended_ago > 60)) showJob(job);
  if (job && job.state === "running") poll(false);
  if (job && job.state === "done" && job.stored === "storing") watchStoring(job.number);
  $(".job-cancel", bar).addEventListener("click", async () => {
    const { data } = await postJSON("/api/cancel", {});
    if (data.job) showJob(data.job);
  });
}

async function startComputation(body, errorBox) {
  if (errorBox) errorBox.hidden = true;
  const { status, data } = await postJSON("/api/explain", body);
  if (status === 200 && data.link) { window.location.assign(data.link); return; }
  if (status !== 202) {
    const message = data.error || `the app answered ${status}`;
    if (errorBox) { errorBox.textContent = message; errorBox.hidden = false; } else window.alert(message);
    return;
  }
  showJob(data.job);
  poll(true);
}

// ---- "explain with…": the registry's options for the chosen method --------------------------------------------
function setupExplain() {
  const form = $("#explain");
  if (!form) return;
  const methods = JSON.parse($("#methods-data").textContent);
  const byName = Object.fromEntries(methods.map((m) => [m.name, m]));
  const fieldset = $("#options");
  const build = () => {
    const method = byName[form.method.value];
    $("#method-summary").textContent = method.summary;
    for (const old of $$(".option", fieldset)) old.remove();
    for (const option of method.options) {
      const label = document.createElement("label");
      label.className = "option";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = option.name;
      const input = document.createElement("input");
      input.type = "text";
      input.name = `option:${option.name}`;
      input.value = option.default;
      input.dataset.default = option.default;
      input.placeholder = option.default;
      const hint = document.createElement("span");
      hint.className = "hint";
      hint.textContent = `${option.help} (${option.rule})`;
      label.append(name, input, hint);
      fieldset.append(label);
    }
    fieldset.hidden = method.options.length === 0;
    if (form.score) {  // layer and neuron maps are not over the image's pixels: no scores for them
      form.score.disabled = !method.scorable;
      form.score.checked = method.scorable;
      $("#score-hint").hidden = method.scorable;
    }
    sessionStorage.setItem("cnnlens-method", form.method.value);  // kept after a computation reloads the page
  };
  const kept = sessionStorage.getItem("cnnlens-method");
  if (kept && byName[kept]) form.method.value = kept;
  form.method.addEventListener("change", build);
  build();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const options = {};
    for (const input of $$("input[name^='option:']", form)) {
      if (input.value.trim() !== input.dataset.default) options[input.name.slice(7)] = input.value.trim();
    }
    const body = { id: form.dataset.id, method: form.method.value, options, explains: form.explains.value };
    if (form.score) body.score = form.score.checked && !form.score.disabled;
    await startComputation(body, $("#explain-error"));
  });
  for (const button of $$("button.compute")) {
    button.addEventListener("click", () => startComputation(
      { id: form.dataset.id, label: button.dataset.label, explains: $("#class-form").explains.value }, null));
  }
}

// ---- sortable tables ------------------------------------------------------------------------------------------
function setupSorting() {
  for (const table of $$("table.sortable")) {
    $$("thead th", table).forEach((th, column) => {
      th.addEventListener("click", () => {
        const numeric = th.dataset.type === "num";
        const down = th.dataset.order !== "down";
        $$("thead th", table).forEach((other) => delete other.dataset.order);
        th.dataset.order = down ? "down" : "up";
        const body = $("tbody", table);
        const rows = $$("tr", body);
        const value = (row) => row.children[column].dataset.value;
        rows.sort((a, b) => {
          const x = numeric ? Number(value(a)) - Number(value(b)) : value(a).localeCompare(value(b));
          return down ? -x : x;
        });
        body.append(...rows);
      });
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupLook();
  setupJob();
  setupExplain();
  setupSorting();
});
