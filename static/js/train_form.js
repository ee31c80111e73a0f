// An existing dataset version keeps its own name and split, so the fields for a
// new version are switched off while one is chosen: disabled fields are not
// sent, and the server refuses them together with an existing version.
(function () {
  "use strict";
  const choice = document.getElementById("id_dataset_version");
  if (!choice) return;
  const fields = ["id_dataset_version_name", "id_train_ratio"]
    .map((id) => document.getElementById(id))
    .filter(Boolean);

  function update() {
    const existing = choice.value !== "";
    for (const field of fields) field.disabled = existing;
  }

  choice.addEventListener("change", update);
  update();
})();
