// Gallery: "select all on this page" and a count of the selected images.
(function () {
  "use strict";

  const form = document.getElementById("bulk-delete-form");
  if (!form) return;

  const boxes = Array.from(document.querySelectorAll("input[name=image_ids][form=bulk-delete-form]"));
  const selectAll = form.querySelector("[data-select-all]");
  const count = form.querySelector("[data-selected-count]");

  function refresh() {
    const selected = boxes.filter(function (box) { return box.checked; }).length;
    count.textContent = selected ? selected + " selected" : "";
    selectAll.textContent = selected === boxes.length ? "Select none" : "Select all on this page";
    boxes.forEach(function (box) {
      box.closest(".tile").classList.toggle("selected", box.checked);
    });
  }

  selectAll.hidden = false;
  selectAll.addEventListener("click", function () {
    const all = boxes.every(function (box) { return box.checked; });
    boxes.forEach(function (box) { box.checked = !all; });
    refresh();
  });
  boxes.forEach(function (box) { box.addEventListener("change", refresh); });
  refresh();
})();
