// Smart groups: add and remove condition rows, fit each row's value suggestions to its field,
// and keep a live count of who the rules being edited would match (POST /console/groups/preview,
// nothing saved). The form works without this script: the rows shown plus one empty row.
(function () {
  "use strict";
  var form = document.querySelector("[data-rules-form]");
  if (!form) { return; }
  var learndir = window.learndir || {};
  var rows = form.querySelector("[data-rule-rows]");
  var template = form.querySelector("template[data-rule-template]");
  var live = form.querySelector("[data-live-count]");
  var CONTROL = /^(join|attr|op|value)-\d+(-error)?$/;

  function renumber() {
    rows.querySelectorAll("[data-rule-row]").forEach(function (row, i) {
      row.querySelectorAll("[id]").forEach(function (el) {
        if (CONTROL.test(el.id)) { el.id = el.id.replace(/-\d+/, "-" + i); }
      });
      row.querySelectorAll("label[for]").forEach(function (label) {
        label.htmlFor = label.htmlFor.replace(/-\d+$/, "-" + i);
      });
      row.querySelectorAll("[aria-describedby]").forEach(function (el) {
        el.setAttribute("aria-describedby", el.getAttribute("aria-describedby").replace(/-\d+-error/g, "-" + i + "-error"));
      });
      row.querySelectorAll("[data-row-number]").forEach(function (span) {
        span.textContent = span.textContent.replace(/\d+/, String(span.closest("[data-rule-join]") ? i : i + 1));
      });
      var join = row.querySelector("[data-rule-join]");
      if (join) { join.hidden = i === 0; }
    });
  }

  function fitRow(row) {
    var attr = row.querySelector("[data-rule-attr]");
    var value = row.querySelector("[data-rule-value]");
    var op = row.querySelector("[data-rule-op]");
    var option = attr.options[attr.selectedIndex];
    var list = "";
    if (attr.value === "department") { list = "dl-departments"; }
    else if (attr.value === "group") { list = "dl-groups"; }
    else if (option && option.getAttribute("data-type") === "country") { list = "dl-countries"; }
    if (list) { value.setAttribute("list", list); } else { value.removeAttribute("list"); }
    var below = op.querySelector("option[value='2']");
    below.disabled = attr.value !== "department";
    if (below.disabled && op.value === "2") { op.value = "1"; }
  }

  var count = learndir.debounce ? learndir.debounce(refreshCount, 300) : refreshCount;
  var asked = 0;
  function refreshCount() {
    var ticket = ++asked;
    live.textContent = "Counting\u2026";
    fetch(form.getAttribute("data-preview"), {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      headers: { "X-CSRF-Token": learndir.csrf || "" },
    }).then(function (r) { return r.json(); }).then(function (answer) {
      if (ticket === asked) { live.textContent = answer.text || ""; }
    }).catch(function () {
      if (ticket === asked) { live.textContent = "The count could not be fetched."; }
    });
  }

  function addRow() {
    var fresh = template.content.firstElementChild.cloneNode(true);
    rows.appendChild(fresh);
    wire(fresh);
    renumber();
    fitRow(fresh);
    fresh.querySelector("[data-rule-attr]").focus();
  }

  function wire(row) {
    var remove = row.querySelector("[data-rule-remove]");
    remove.hidden = false;
    remove.addEventListener("click", function () {
      var all = rows.querySelectorAll("[data-rule-row]");
      var index = Array.prototype.indexOf.call(all, row);
      if (all.length === 1) {
        row.querySelector("[data-rule-value]").value = "";
      } else {
        row.remove();
        renumber();
      }
      var left = rows.querySelectorAll("[data-rule-row]");
      var next = left[Math.min(index, left.length - 1)];
      (next.querySelector("[data-rule-remove]") || next).focus();
      count();
    });
    row.querySelector("[data-rule-attr]").addEventListener("change", function () { fitRow(row); });
  }

  rows.querySelectorAll("[data-rule-row]").forEach(function (row) { wire(row); fitRow(row); });
  var add = form.querySelector("[data-rule-add]");
  add.hidden = false;
  add.addEventListener("click", addRow);
  form.addEventListener("input", count);
  form.addEventListener("change", count);
})();
