// Settings: a form with data-confirm="question" asks before it is sent (revoking a key or a
// token, removing a subscriber cannot be undone). Without script the form is sent as it is.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
