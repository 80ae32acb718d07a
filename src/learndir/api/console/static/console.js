// learndir's console: small progressive enhancements; every page works without them.
// No inline script anywhere (the Content-Security-Policy forbids it): behaviour is attached
// here by data- attributes.
(function () {
  "use strict";
  var body = document.body;
  var learndir = (window.learndir = {
    base: body.getAttribute("data-base") || "/console",
    csrf: body.getAttribute("data-csrf") || "",
    debounce: function (fn, ms) {
      var timer = null;
      return function () {
        var args = arguments, self = this;
        clearTimeout(timer);
        timer = setTimeout(function () { fn.apply(self, args); }, ms);
      };
    },
    // A GET for a fragment of HTML (the console answers fragments when asked with this header).
    fetchFragment: function (url) {
      return fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      });
    },
  });

  // <select data-autosubmit>: submit its form when the choice changes.
  document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { if (el.form) { el.form.requestSubmit(); } });
  });

  // <input type=checkbox data-select-all="name">: ticks every checkbox named `name`; a count
  // element [data-selected-count] says how many are ticked, and [data-needs-selection] buttons
  // are enabled only while some are.
  function refreshSelection() {
    var ticked = document.querySelectorAll("input[type=checkbox][name=selected]:checked").length;
    document.querySelectorAll("[data-selected-count]").forEach(function (el) {
      el.textContent = ticked === 1 ? "1 selected" : ticked + " selected";
    });
    document.querySelectorAll("[data-needs-selection]").forEach(function (el) { el.disabled = ticked === 0; });
  }
  document.querySelectorAll("[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[type=checkbox][name=" + all.getAttribute("data-select-all") + "]")
        .forEach(function (box) { box.checked = all.checked; });
      refreshSelection();
    });
  });
  document.addEventListener("change", function (e) {
    if (e.target && e.target.name === "selected") { refreshSelection(); }
  });
  learndir.refreshSelection = refreshSelection;
  refreshSelection();
})();
