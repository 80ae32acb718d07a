// Import and export: the job page follows a running job. Every 500 ms it asks
// [data-job-progress] (a small JSON answer) where the job is, moves the <progress> bar and its
// text (an aria-live region); once the job is finished it fetches the page's details again
// (answered as a fragment) and puts them in place. Without this script the page still works:
// reloading it shows where the job is.
(function () {
  "use strict";
  var section = document.querySelector("[data-job-progress]");
  if (!section) { return; }
  document.documentElement.classList.add("js");
  var progressUrl = section.getAttribute("data-job-progress");
  var pageUrl = section.getAttribute("data-job-page");
  var bar = document.getElementById("job-progress");
  var text = document.getElementById("job-progress-text");
  var status = section.querySelector("[data-job-status]");
  var failures = 0;

  function show(state) {
    if (state.rowsTotal !== null && state.rowsTotal !== undefined) {
      bar.max = Math.max(state.rowsTotal, 1);
      bar.value = state.status === "done" ? bar.max : state.rowsDone;
      bar.textContent = state.rowsDone + " of " + state.rowsTotal;
    } else if (state.status === "failed") {
      bar.max = 1;
      bar.value = 0;
    }
    if (text.textContent !== state.text) { text.textContent = state.text; }
    if (status) { status.textContent = state.status + (state.finished ? "" : " (" + state.phase + ")"); }
  }

  function finish() {
    var fetchFragment = window.learndir && window.learndir.fetchFragment;
    var get = fetchFragment || function (url) {
      return fetch(url, { headers: { "X-Fragment": "1" }, credentials: "same-origin" }).then(function (r) { return r.text(); });
    };
    get(pageUrl).then(function (html) {
      var details = document.getElementById("job-details");
      if (details) { details.innerHTML = html; }
      section.removeAttribute("data-job-progress");
      section.setAttribute("data-job-finished", "");
    }).catch(function () {
      window.location.reload();
    });
  }

  function poll() {
    fetch(progressUrl, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      })
      .then(function (state) {
        failures = 0;
        show(state);
        if (state.finished) { finish(); } else { window.setTimeout(poll, 500); }
      })
      .catch(function () {
        failures += 1;
        if (failures < 10) {
          window.setTimeout(poll, 2000);
        } else {
          text.textContent = "The job's progress cannot be read now; reload the page to see where it is.";
        }
      });
  }

  window.setTimeout(poll, 500);
})();
