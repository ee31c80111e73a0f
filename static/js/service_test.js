// The service test page: send a photo to the service and draw its answer.
(function () {
  "use strict";

  const panel = document.getElementById("service-test");
  if (!panel) return;

  const drop = document.getElementById("test-drop");
  const input = document.getElementById("test-file");
  const preview = document.getElementById("test-preview");
  const figure = preview.closest("figure");
  const size = document.getElementById("test-size");
  const error = document.getElementById("test-error");
  const labelLine = document.getElementById("test-label");
  const labelName = document.getElementById("test-label-name");
  const latency = document.getElementById("test-latency");
  const notes = document.getElementById("test-notes");
  const scores = document.getElementById("test-scores");

  function csrfToken() {
    const field = panel.querySelector("input[name=csrfmiddlewaretoken]");
    if (field) return field.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  // Each test starts blank: an error must not sit under the previous photo.
  function clear() {
    error.hidden = true;
    labelLine.hidden = true;
    figure.hidden = true;
    preview.removeAttribute("src");
    size.textContent = "";
    notes.replaceChildren();
    scores.replaceChildren();
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function showAnswer(answer) {
    preview.src = answer.preview;
    figure.hidden = false;
    size.textContent = "Central square of " + answer.width + " × " + answer.height + " pixels";
    labelName.textContent = answer.predicted_label;
    latency.textContent = "in " + answer.latency_ms + " ms";
    labelLine.hidden = false;

    for (const note of answer.notes || []) {
      const item = document.createElement("li");
      item.textContent = note;
      notes.append(item);
    }

    answer.all_scores.forEach(function ([label, probability], index) {
      const row = document.createElement("div");
      row.className = "row" + (index === 0 ? " top" : "");
      const name = document.createElement("span");
      name.textContent = label;
      const bar = document.createElement("div");
      bar.className = "bar";
      const fill = document.createElement("div");
      fill.style.width = (probability * 100).toFixed(1) + "%";
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = (probability * 100).toFixed(1) + " %";
      row.append(name, bar, value);
      scores.append(row);
    });
  }

  async function send(file) {
    clear();
    if (!file) return;
    const body = new FormData();
    body.append("images", file);
    labelLine.hidden = false;
    labelName.textContent = "…";
    latency.textContent = "";

    let response;
    try {
      response = await fetch(panel.dataset.url, {
        method: "POST",
        body: body,
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
    } catch (e) {
      labelLine.hidden = true;
      showError("The server could not be reached.");
      return;
    }

    let answer = {};
    try {
      answer = await response.json();
    } catch (e) {
      answer = { detail: "The server answered " + response.status + "." };
    }
    // A refused photo comes with a 200 and "ok": false (see the view).
    if (!response.ok || answer.ok === false) {
      labelLine.hidden = true;
      showError(answer.detail || "The server answered " + response.status + ".");
      return;
    }
    showAnswer(answer);
    // The status card counts predictions and their latency: bring it up to date.
    if (window.htmx) {
      htmx.ajax("GET", panel.dataset.statusUrl, {
        target: "#service-status",
        swap: "outerHTML",
      });
    }
  }

  input.addEventListener("change", function () {
    send(input.files[0]);
    input.value = "";
  });

  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (event) {
      event.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function () {
      drop.classList.remove("over");
    });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    const files = event.dataTransfer.files;
    if (files.length > 1) {
      clear();
      showError("Drop one photo at a time.");
      return;
    }
    send(files[0]);
  });
})();
