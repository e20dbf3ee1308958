// The account form has credential fields for every backend; show only the
// chosen backend's (the others are ignored when saving anyway).
(function () {
  "use strict";
  function update(select) {
    document.querySelectorAll("[data-backend]").forEach(function (input) {
      var row = input.closest(".form-row") || input.parentElement;
      if (row) row.hidden = input.dataset.backend !== select.value;
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_backend");
    if (!select) return;
    update(select);
    select.addEventListener("change", function () { update(select); });
  });
})();
