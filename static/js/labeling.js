// Labeling screens: selection in the grid, and keyboard control of both the
// grid and the focused one-image view. The server does the work through htmx;
// this file only picks what to select and which button a key stands for.
(function () {
  "use strict";

  function typingIn(target) {
    if (!target) return false;
    const tag = target.tagName;
    if (tag === "INPUT") {
      return !["checkbox", "radio", "button", "submit"].includes(target.type);
    }
    return tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
  }

  function press(element) {
    if (!element || element.disabled || element.getAttribute("aria-disabled") === "true") {
      return false;
    }
    element.click();
    return true;
  }

  // A refused action (422) carries a message for the status line, and
  // HX-Retarget says where; htmx would otherwise drop it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    const xhr = event.detail.xhr;
    if (xhr.status === 422 && xhr.getResponseHeader("HX-Retarget")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // -- The grid ---------------------------------------------------------------

  function setUpGrid(root) {
    let lastIndex = null;

    const form = () => document.getElementById("selection");
    const boxes = () => Array.from(document.querySelectorAll("#selection .tile-check"));
    const allMatching = () => document.getElementById("all-matching");

    function selectedCount() {
      const all = allMatching();
      if (all && all.value === "1") {
        return parseInt(form().dataset.matchCount, 10) || 0;
      }
      return boxes().filter((box) => box.checked).length;
    }

    function refresh() {
      const count = selectedCount();
      const counter = document.getElementById("selected-count");
      if (counter) {
        const all = allMatching();
        counter.textContent = all && all.value === "1" ? "All " + count + " matching" : count;
      }
      document.querySelectorAll("#label-panel .assign").forEach(function (button) {
        button.disabled = count === 0;
      });
    }

    function setAll(checked, everyMatch) {
      boxes().forEach((box) => { box.checked = checked; });
      const all = allMatching();
      if (all) all.value = everyMatch ? "1" : "0";
      lastIndex = null;
      refresh();
    }

    root.addEventListener("click", function (event) {
      const choice = event.target.closest("[data-select]");
      if (choice) {
        const what = choice.dataset.select;
        setAll(what !== "none", what === "all");
        return;
      }

      const show = event.target.closest("[data-filter-label]");
      if (show) {
        const select = document.getElementById("filter-label");
        if (select) {
          event.preventDefault();
          select.value = show.dataset.filterLabel;
          select.dispatchEvent(new Event("change", { bubbles: true }));
        }
        return;
      }

      const tile = event.target.closest("#selection .label-tile");
      if (!tile || event.target.closest("a")) return;
      const box = tile.querySelector(".tile-check");
      if (event.target !== box) {
        // Toggle here rather than through the <label>, so shift is seen.
        event.preventDefault();
        box.checked = !box.checked;
      }

      const all = boxes();
      const index = all.indexOf(box);
      if (event.shiftKey && lastIndex !== null && lastIndex !== index) {
        const [from, to] = lastIndex < index ? [lastIndex, index] : [index, lastIndex];
        for (let i = from; i <= to; i++) all[i].checked = box.checked;
      }
      lastIndex = index;
      allMatching().value = "0";
      refresh();
    });

    document.addEventListener("keydown", function (event) {
      if (typingIn(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
      const key = event.key;
      if (key === "Escape") {
        setAll(false, false);
      } else if (key === "a" || key === "A") {
        setAll(true, false);
      } else if (/^[0-9-]$/.test(key)) {
        if (selectedCount() === 0) return;
        if (!press(document.querySelector('#label-panel [data-assign-key="' + key + '"]'))) return;
      } else {
        return;
      }
      event.preventDefault();
    });

    // A filter or page change redraws the grid: the images still shown stay
    // selected. After an assignment (a POST) the selection starts empty.
    let keep = null;
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      const target = event.detail.target;
      if (!target || target.id !== "grid-area" || !event.detail.shouldSwap) return;
      const config = event.detail.requestConfig;
      const redraw = config && config.verb === "get" && allMatching().value !== "1";
      keep = redraw ? boxes().filter((box) => box.checked).map((box) => box.value) : [];
    });
    document.body.addEventListener("htmx:afterSwap", function () {
      if (keep === null) return;
      boxes().forEach((box) => { if (keep.includes(box.value)) box.checked = true; });
      keep = null;
      lastIndex = null;
      refresh();
    });

    // A re-rendered panel starts with the assign buttons in step.
    document.body.addEventListener("htmx:afterSettle", function () {
      if (!document.querySelector("#selection .tile-check:checked")) lastIndex = null;
      refresh();
    });
    refresh();
  }

  // -- The focused view -------------------------------------------------------

  function setUpFocus() {
    let busy = false;
    const pending = [];

    function actionFor(event) {
      const key = event.key;
      if ((event.ctrlKey || event.metaKey) && (key === "z" || key === "Z")) return "z";
      if (event.ctrlKey || event.metaKey || event.altKey) return null;
      if (/^[0-9-]$/.test(key)) return key;
      if (key === "ArrowLeft" || key === "ArrowRight") return key;
      if (key === "s" || key === "S" || key === " ") return "s";
      if (key === "z" || key === "Z") return "z";
      return null;
    }

    function run(action) {
      const panel = document.getElementById("focus-panel");
      if (!panel) return false;
      return press(panel.querySelector('[data-key="' + action + '"]'));
    }

    document.addEventListener("keydown", function (event) {
      if (typingIn(event.target)) return;
      const action = actionFor(event);
      if (!action) return;
      event.preventDefault();
      if (document.activeElement && document.activeElement !== document.body) {
        document.activeElement.blur();
      }
      // Keys pressed while the previous one is on its way apply, in order, to
      // the images that come up next.
      if (busy) {
        if (pending.length < 5) pending.push(action);
        return;
      }
      run(action);
    });

    document.body.addEventListener("htmx:beforeRequest", function () { busy = true; });

    function settled() {
      busy = false;
      // A key whose button is not there (undo with nothing to undo) is skipped.
      while (pending.length && !run(pending.shift()));
    }
    // The address names the image on show, so a reload or a shared link opens
    // it, whichever key brought it up.
    function showImageInAddress() {
      const panel = document.getElementById("focus-panel");
      const id = panel && panel.dataset.image;
      if (!id) return;
      const url = new URL(window.location.href);
      if (url.searchParams.get("image") === id) return;
      url.searchParams.set("image", id);
      history.replaceState(history.state, "", url);
    }
    document.body.addEventListener("htmx:afterSwap", showImageInAddress);
    document.body.addEventListener("htmx:afterSettle", settled);
    document.body.addEventListener("htmx:afterRequest", function (event) {
      if (!event.detail.successful && !event.detail.xhr.getResponseHeader("HX-Retarget")) {
        pending.length = 0;
        settled();
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const root = document.querySelector("[data-labeling]");
    if (!root) return;
    if (root.dataset.labeling === "grid") setUpGrid(root);
    if (root.dataset.labeling === "focus") setUpFocus();
  });
})();
