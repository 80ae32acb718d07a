// The People section: search as you type on the list, and the add/edit form's managed
// departments shown only for roles that manage departments. Without this script the forms
// work as plain forms.
(function () {
  "use strict";
  var learndir = window.learndir;
  var form = document.querySelector("form[data-people-search]");
  var results = document.getElementById("people-results");
  if (form && results && learndir) {
    var announce = document.querySelector("[data-people-announce]");
    var back = document.querySelector("form#people-bulk input[name=back]");
    var latest = 0;
    var query = function () {
      var params = new URLSearchParams();
      new FormData(form).forEach(function (value, key) {
        if (typeof value === "string" && value !== "" && !(key === "sub" && value === "1")) {
          params.append(key, value);
        }
      });
      // "sub=0" then "sub=1": the box is ticked (the default), so neither is needed.
      if (form.querySelector("#sub") && form.querySelector("#sub").checked) { params.delete("sub"); }
      return params.toString();
    };
    var refresh = function () {
      var search = query();
      var url = form.getAttribute("action") + (search ? "?" + search : "");
      var ticket = ++latest;
      results.setAttribute("aria-busy", "true");
      fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" })
        .then(function (r) {
          // A signed-out session or a refusal is a whole page: go there. A bad criterion
          // (422) is a fragment with its message.
          if (r.redirected || (!r.ok && r.status !== 422)) {
            window.location.assign(url);
            return null;
          }
          return r.text();
        })
        .then(function (html) {
          if (html === null || ticket !== latest) { return; }
          results.innerHTML = html;
          results.removeAttribute("aria-busy");
          history.replaceState(null, "", url);
          if (back) { back.value = search; }
          var heading = results.querySelector("[data-people-count]");
          if (announce && heading) { announce.textContent = heading.getAttribute("data-people-count"); }
          if (learndir.refreshSelection) { learndir.refreshSelection(); }
        })
        .catch(function () { results.removeAttribute("aria-busy"); });
    };
    var typed = learndir.debounce(refresh, 200);
    var box = form.querySelector("input[name=q]");
    if (box) { box.addEventListener("input", typed); }
    form.addEventListener("change", function (e) { if (e.target !== box) { refresh(); } });
    form.addEventListener("submit", function (e) { e.preventDefault(); refresh(); });
    // The select-all box of a swapped-in table (console.js binds only the first one).
    results.addEventListener("change", function (e) {
      var all = e.target;
      if (!all || !all.hasAttribute || !all.hasAttribute("data-select-all")) { return; }
      document.querySelectorAll("input[type=checkbox][name=selected]").forEach(function (b) { b.checked = all.checked; });
      if (learndir.refreshSelection) { learndir.refreshSelection(); }
    });
  }

  var role = document.querySelector("select[data-role-select]");
  var managed = document.querySelector("[data-managed]");
  if (role && managed) {
    var show = function () {
      var chosen = role.options[role.selectedIndex];
      var select = managed.querySelector("select");
      var needed = (chosen && chosen.hasAttribute("data-manages-departments")) ||
        (select && select.selectedOptions.length > 0);
      managed.hidden = !needed;
    };
    role.addEventListener("change", show);
    show();
  }
})();
