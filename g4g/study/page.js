// The rating page: ask the server for the current clip, play it, post the three scores, repeat.
// The server decides what comes next (a reload or a new browser resumes where the rater stopped).
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;

for (const box of document.querySelectorAll("[data-criterion]")) {
  for (let v = 1; v <= 5; v++) {
    const label = document.createElement("label");
    const input = Object.assign(document.createElement("input"),
                                {type: "radio", name: box.dataset.criterion, value: String(v), required: true});
    label.append(input, " " + v);
    box.append(label);
  }
}

function chosen(name) {
  const input = document.querySelector(`input[name="${name}"]:checked`);
  return input ? Number(input.value) : null;
}

function complete() {
  return [...document.querySelectorAll("[data-criterion]")].every((b) => chosen(b.dataset.criterion) !== null);
}

async function call(url, options) {
  const resp = await fetch(url, {credentials: "same-origin", ...options});
  const body = await resp.json().catch(() => ({error: `the server answered ${resp.status}`}));
  if (!resp.ok) throw Object.assign(new Error(body.error || `the server answered ${resp.status}`), {status: resp.status});
  return body;
}

async function load() {
  $("message").textContent = "";
  try {
    const next = await call("/api/next");
    if (next.done) {
      $("rating").hidden = true;
      $("done").hidden = false;
      return;
    }
    current = next.clip;
    $("form").reset();
    $("submit").disabled = true;
    $("progress").textContent = `Clip ${next.position} of ${next.total}`;
    $("video").src = next.video;
    $("rating").hidden = false;
  } catch (e) {
    $("message").textContent = e.message;
  }
}

$("form").addEventListener("change", () => { $("submit").disabled = !complete(); });
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("submit").disabled = true;
  const body = {clip: current};
  for (const box of document.querySelectorAll("[data-criterion]")) body[box.dataset.criterion] = chosen(box.dataset.criterion);
  try {
    await call("/api/rating", {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body)});
    await load();
  } catch (e) {
    $("message").textContent = e.message;
    $("submit").disabled = !complete();
    if (e.status === 409) {  // rated meanwhile (a lost answer, another tab): go on, and say why
      await load();
      $("message").textContent = e.message;
    }
  }
});

load();
