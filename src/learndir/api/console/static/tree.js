// Departments: "Expand all" and "Collapse all" for the tree's <details> branches (each branch
// opens and closes by itself with the keyboard: its <summary> is a native control).
(function () {
  "use strict";
  var tools = document.querySelector("[data-tree-tools]");
  if (!tools) { return; }
  tools.hidden = false;
  tools.querySelectorAll("[data-tree]").forEach(function (button) {
    button.addEventListener("click", function () {
      var open = button.getAttribute("data-tree") === "expand";
      document.querySelectorAll("details[data-branch]").forEach(function (d) { d.open = open; });
    });
  });
})();
