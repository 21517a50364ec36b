// Keeps job tables current while a job runs: polls the status endpoint every two seconds and
// rewrites status and progress; stops when nothing runs any more. No library, works offline.
(function () {
  "use strict";
  function render(table, jobs) {
    var rows = table.tBodies[0].rows;
    jobs.slice(0, rows.length).forEach(function (job, index) {
      var row = rows[index];
      row.dataset.running = job.running ? "1" : "0";
      row.classList.toggle("cdp-overdue", job.failed);
      row.querySelector(".cdp-job-status").textContent = job.status;
      var bar = row.querySelector(".meter > span");
      if (bar) {
        bar.style.width = job.percent + "%";
        bar.parentNode.setAttribute("aria-valuenow", job.percent);
        row.querySelector(".cdp-job-count").textContent = job.done + " / " + job.total;
      }
    });
    return jobs.some(function (job) { return job.running; });
  }
  function poll(table) {
    fetch(table.dataset.statusUrl, {credentials: "same-origin"})
      .then(function (response) { return response.json(); })
      .then(function (data) {
        if (render(table, data.jobs)) { window.setTimeout(function () { poll(table); }, 2000); }
      })
      .catch(function () { window.setTimeout(function () { poll(table); }, 10000); });
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.cdp-jobs").forEach(function (table) {
      if (table.querySelector('tr[data-running="1"]')) { poll(table); }
    });
  });
})();
