// The export page's counts per purpose, fetched once the page shows (SegmentAdmin
// .export_counts_view): counting a large segment takes a while, and choosing the columns
// need not wait for it.
(function () {
  "use strict";
  const table = document.querySelector("table[data-counts-url]");
  if (!table) {
    return;
  }
  const number = new Intl.NumberFormat("en");
  const cells = (name) => {
    const row = Array.from(table.querySelectorAll("tr[data-purpose]")).find(
      (tr) => tr.dataset.purpose === name
    );
    return row ? row.querySelectorAll("td") : null;
  };
  fetch(table.dataset.countsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => {
      if (!response.ok) {
        throw new Error(response.status);
      }
      return response.json();
    })
    .then((data) => {
      data.purposes.forEach((count) => {
        const found = cells(count.name);
        if (found) {
          found[0].textContent = number.format(count.allowed);
          found[1].textContent = number.format(count.left_out);
        }
      });
    })
    .catch(() => {
      table.querySelectorAll("tr[data-purpose] td").forEach((cell) => {
        cell.textContent = "not counted: reload the page to try again";
      });
    })
    .finally(() => table.setAttribute("aria-busy", "false"));
})();
