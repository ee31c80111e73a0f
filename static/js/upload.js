// Upload page: send many photos in small batches with a progress bar, and fill
// the per-file report as each batch is answered. Without this script the forms
// post normally and the server answers with a report page.
(function () {
  "use strict";

  const form = document.getElementById("upload-form");
  const zipForm = document.getElementById("zip-form");
  if (!form || !zipForm) return;

  const BATCH_FILES = parseInt(form.dataset.batchFiles, 10) || 20;
  const BATCH_BYTES = 32 * 1024 * 1024;
  const MAX_BYTES = parseInt(form.dataset.maxBytes, 10);
  const MAX_ZIP_BYTES = parseInt(zipForm.dataset.maxZipBytes, 10);

  const dropzone = document.getElementById("dropzone");
  const fileInput = document.getElementById("upload-files");
  const labelInput = document.getElementById("upload-label");
  const submitButton = document.getElementById("upload-submit");
  const panel = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const statusText = document.getElementById("upload-status");
  const countsText = document.getElementById("upload-counts");
  const reportBody = document.querySelector("#upload-report tbody");
  const done = document.getElementById("upload-done");
  const notes = document.getElementById("upload-notes");
  const hint = document.getElementById("upload-hint");
  const earlier = document.getElementById("upload-earlier");
  const counts = { accepted: 0, duplicate: 0, rejected: 0 };
  let busy = false;

  // With the script, choosing or dropping files starts the upload at once.
  submitButton.hidden = true;

  function csrfToken(someForm) {
    return someForm.querySelector("input[name=csrfmiddlewaretoken]").value;
  }

  function sentence(text) {
    return /[.!?]$/.test(text) ? text : text + ".";
  }

  function megabytes(bytes) {
    return (bytes / (1024 * 1024)).toFixed(1) + " MB";
  }

  function setProgress(fraction) {
    const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.firstElementChild.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
  }

  function showCounts() {
    countsText.textContent =
      counts.accepted + " accepted · " + counts.duplicate + " duplicate · " +
      counts.rejected + " rejected";
  }

  function addRow(result) {
    const row = document.createElement("tr");
    row.className = result.status;
    const name = document.createElement("td");
    name.textContent = result.name;
    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "badge " + result.status;
    badge.textContent = result.status;
    status.appendChild(badge);
    const details = document.createElement("td");
    if (result.label && result.status !== "rejected") {
      const chip = document.createElement("span");
      chip.className = "label-chip neutral";
      chip.textContent = result.label;
      details.appendChild(chip);
      details.appendChild(document.createTextNode(" "));
    }
    details.appendChild(document.createTextNode(result.message || ""));
    row.append(name, status, details);
    reportBody.appendChild(row);
    if (result.status in counts) counts[result.status] += 1;
    showCounts();
  }

  // A line about the upload as a whole, e.g. hidden files that were skipped.
  function addNote(text) {
    const item = document.createElement("li");
    item.className = "message warning";
    item.textContent = text;
    notes.appendChild(item);
    notes.hidden = false;
  }

  function addAnswer(answer) {
    answer.results.forEach(addRow);
    answer.notes.forEach(addNote);
  }

  // Each upload gets a report of its own; the reports before it fold away
  // under "Earlier uploads", newest first.
  function newReport() {
    hint.hidden = true;
    if (reportBody.children.length || !notes.hidden) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = statusText.textContent + " " + countsText.textContent;
      details.appendChild(summary);
      [notes, reportBody.closest("table")].forEach(function (element) {
        if (element.hidden) return;
        const copy = element.cloneNode(true);
        copy.removeAttribute("id");
        details.appendChild(copy);
      });
      earlier.querySelector("h3").after(details);
      earlier.hidden = false;
    }
    reportBody.replaceChildren();
    notes.replaceChildren();
    notes.hidden = true;
    counts.accepted = counts.duplicate = counts.rejected = 0;
    countsText.textContent = "";
    done.hidden = true;
  }

  function rejectLocally(name, message) {
    addRow({ name: name, status: "rejected", message: message, label: null });
  }

  function begin(text) {
    busy = true;
    panel.hidden = false;
    done.hidden = true;
    statusText.textContent = text;
    setProgress(0);
    fileInput.disabled = true;
    zipForm.querySelector("button[type=submit]").disabled = true;
  }

  function finish(text) {
    busy = false;
    statusText.textContent = text;
    done.hidden = false;
    fileInput.disabled = false;
    fileInput.value = "";
    zipForm.querySelector("button[type=submit]").disabled = false;
  }

  // POST a FormData with upload progress; resolves with the JSON answer.
  function send(data, onProgress) {
    return new Promise(function (resolve) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      xhr.addEventListener("load", function () {
        let answer = null;
        try {
          answer = JSON.parse(xhr.responseText);
        } catch (error) {
          answer = null;
        }
        if (xhr.status === 200 && answer && answer.results) {
          resolve({ results: answer.results, notes: answer.notes || [] });
        } else {
          const reason = (answer && (answer.error || answer.detail)) ||
            "the server answered " + xhr.status + " " + xhr.statusText;
          resolve({ error: reason });
        }
      });
      xhr.addEventListener("error", function () {
        resolve({ error: "the connection failed; try again" });
      });
      xhr.send(data);
    });
  }

  function batchesOf(files) {
    const batches = [];
    let current = [];
    let bytes = 0;
    files.forEach(function (file) {
      if (current.length && (current.length >= BATCH_FILES || bytes + file.size > BATCH_BYTES)) {
        batches.push(current);
        current = [];
        bytes = 0;
      }
      current.push(file);
      bytes += file.size;
    });
    if (current.length) batches.push(current);
    return batches;
  }

  async function uploadFiles(fileList) {
    if (busy || !fileList.length) return;
    newReport();
    const files = [];
    fileList.forEach(function (file) {
      if (file.size > MAX_BYTES) {
        rejectLocally(file.name, "The file is " + megabytes(file.size) +
          "; files over " + megabytes(MAX_BYTES) + " are refused.");
      } else {
        files.push(file);
      }
    });
    if (!files.length) {
      panel.hidden = false;
      statusText.textContent = "Nothing uploaded.";
      setProgress(0);
      return;
    }

    begin("Uploading " + files.length + " file" + (files.length === 1 ? "" : "s") + "…");
    const total = files.reduce(function (sum, file) { return sum + file.size; }, 0) || 1;
    let sent = 0;
    let filesDone = 0;

    for (const batch of batchesOf(files)) {
      const data = new FormData();
      data.append("csrfmiddlewaretoken", csrfToken(form));
      data.append("label", labelInput.value.trim());
      batch.forEach(function (file) { data.append("files", file, file.name); });
      const batchBytes = batch.reduce(function (sum, file) { return sum + file.size; }, 0);

      const answer = await send(data, function (loaded, requestTotal) {
        setProgress((sent + batchBytes * (loaded / requestTotal)) / total);
      });
      if (answer.error) {
        batch.forEach(function (file) {
          rejectLocally(file.name, "Not uploaded: " + sentence(answer.error));
        });
      } else {
        addAnswer(answer);
      }
      sent += batchBytes;
      filesDone += batch.length;
      setProgress(sent / total);
      statusText.textContent = "Uploaded " + filesDone + " of " + files.length + " files…";
    }
    finish("Done: " + files.length + " file" + (files.length === 1 ? "" : "s") + " processed.");
  }

  async function uploadArchive(archive) {
    if (busy) return;
    newReport();
    if (archive.size > MAX_ZIP_BYTES) {
      panel.hidden = false;
      statusText.textContent = "Nothing uploaded.";
      setProgress(0);
      rejectLocally(archive.name, "The archive is " + megabytes(archive.size) +
        "; archives over " + megabytes(MAX_ZIP_BYTES) + " are refused.");
      return;
    }
    begin("Uploading " + archive.name + "…");
    const data = new FormData();
    data.append("csrfmiddlewaretoken", csrfToken(zipForm));
    data.append("archive", archive, archive.name);
    if (zipForm.elements.labels_from_folders.checked) {
      data.append("labels_from_folders", "on");
    }
    const answer = await send(data, function (loaded, requestTotal) {
      setProgress(loaded / requestTotal);
      if (loaded >= requestTotal) statusText.textContent = "Importing the archive…";
    });
    if (answer.error) {
      rejectLocally(archive.name, "Not imported: " + sentence(answer.error));
    } else {
      addAnswer(answer);
    }
    setProgress(1);
    finish("Done: " + archive.name + " processed.");
    zipForm.elements.archive.value = "";
  }

  // Folders dropped on the page are walked for the files inside them.
  function readEntry(entry) {
    if (entry.isFile) {
      return new Promise(function (resolve) {
        entry.file(function (file) { resolve([file]); }, function () { resolve([]); });
      });
    }
    if (!entry.isDirectory) return Promise.resolve([]);
    const reader = entry.createReader();
    return new Promise(function (resolve) {
      const entries = [];
      function readBatch() {
        reader.readEntries(function (batch) {
          if (!batch.length) {
            Promise.all(entries.filter(function (child) {
              return !child.name.startsWith(".") && child.name !== "__MACOSX";
            }).map(readEntry)).then(function (lists) {
              resolve([].concat.apply([], lists));
            });
            return;
          }
          entries.push.apply(entries, batch);
          readBatch();
        }, function () { resolve([]); });
      }
      readBatch();
    });
  }

  async function droppedFiles(transfer) {
    const items = Array.from(transfer.items || []);
    const entries = items
      .map(function (item) { return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null; })
      .filter(Boolean);
    if (!entries.length) return Array.from(transfer.files);
    const lists = await Promise.all(entries.map(readEntry));
    return [].concat.apply([], lists);
  }

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      dropzone.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function () { dropzone.classList.remove("over"); });
  });
  dropzone.addEventListener("drop", async function (event) {
    event.preventDefault();
    const files = await droppedFiles(event.dataTransfer);
    const zips = files.filter(function (file) { return /\.zip$/i.test(file.name); });
    const images = files.filter(function (file) { return !/\.zip$/i.test(file.name); });
    await uploadFiles(images);
    for (const archive of zips) await uploadArchive(archive);
  });

  fileInput.addEventListener("change", function () {
    uploadFiles(Array.from(fileInput.files));
  });

  // The button is hidden, but Enter in the label field still submits.
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!fileInput.files.length) {
      hint.textContent = "Choose or drop photos first.";
      hint.hidden = false;
      return;
    }
    uploadFiles(Array.from(fileInput.files));
  });

  zipForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const archive = zipForm.querySelector("input[type=file]").files[0];
    if (archive) uploadArchive(archive);
  });
})();
