// mtpb report: sortable tables, a problem filter, and links that open a problem's details.
// Plain DOM code, no library: the report must work offline.
(function () {
  "use strict";

  // A cell's sort key: its data-v attribute if any, else its text; numbers sort as numbers,
  // and an empty value ("", "—") always sorts last.
  function keyOf(cell) {
    var raw = cell ? cell.getAttribute("data-v") : "";
    if (raw === null) raw = cell.textContent.trim();
    if (raw === "" || raw === "—" || raw === "nan") return { missing: true };
    var num = Number(raw);
    return isNaN(num) ? { text: raw.toLowerCase() } : { num: num };
  }

  function compare(a, b, sign) {
    if (a.missing || b.missing) return (a.missing ? 1 : 0) - (b.missing ? 1 : 0);
    if ("num" in a && "num" in b) return sign * (a.num - b.num);
    if ("num" in a) return -sign;
    if ("num" in b) return sign;
    return sign * (a.text < b.text ? -1 : a.text > b.text ? 1 : 0);
  }

  function sortBy(table, th) {
    var index = th.cellIndex;
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.map.call(body.rows, function (row, i) {
      return { row: row, key: keyOf(row.cells[index]), i: i };
    });
    rows.sort(function (a, b) { return compare(a.key, b.key, ascending ? 1 : -1) || a.i - b.i; });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (r) { fragment.appendChild(r.row); });
    body.appendChild(fragment);
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    if (!table.tHead || !table.tBodies.length) return;
    table.tHead.querySelectorAll("th").forEach(function (th) {
      th.tabIndex = 0;
      th.title = th.title || "Sort by this column";
      th.addEventListener("click", function () { sortBy(table, th); });
      th.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(table, th); }
      });
    });
  });

  var filter = document.getElementById("problem-filter");
  if (filter) {
    filter.addEventListener("input", function () {
      var query = filter.value.trim().toLowerCase();
      document.querySelectorAll("[data-search]").forEach(function (el) {
        el.hidden = query !== "" && el.getAttribute("data-search").indexOf(query) < 0;
      });
    });
  }

  function setAll(open) {
    document.querySelectorAll("details.problem").forEach(function (d) { d.open = open; });
  }
  var expand = document.getElementById("expand-all");
  var collapse = document.getElementById("collapse-all");
  if (expand) expand.addEventListener("click", function () { setAll(true); });
  if (collapse) collapse.addEventListener("click", function () { setAll(false); });

  // A link to #p-ID opens that problem's details instead of landing on a closed box.
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id ? document.getElementById(id) : null;
    if (el && el.tagName === "DETAILS") {
      el.open = true;
      el.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
