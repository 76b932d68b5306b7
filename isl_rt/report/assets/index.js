// isl-rt report, index page: filter rows by status and sort by any column. Our own code; no
// network, no libraries. Rows carry data-status / data-flagged, cells their sort value in data-v.
(function () {
  "use strict";
  var table = document.getElementById("series-table");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var shown = document.getElementById("shown");
  var filters = document.querySelectorAll("[data-filter]");
  var tests = {
    all: function () { return true; },
    flagged: function (r) { return r.dataset.status === "ok" && r.dataset.flagged === "1"; },
    calm: function (r) { return r.dataset.status === "ok" && r.dataset.flagged !== "1"; },
    error: function (r) { return r.dataset.status !== "ok" && r.dataset.status !== "skipped"; },
    skipped: function (r) { return r.dataset.status === "skipped"; }
  };

  function applyFilter(name) {
    var test = tests[name];
    var count = 0;
    rows.forEach(function (r) { var on = test(r); r.hidden = !on; count += on ? 1 : 0; });
    Array.prototype.forEach.call(filters, function (b) { b.setAttribute("aria-pressed", String(b.dataset.filter === name)); });
    shown.textContent = count + " of " + rows.length + " shown";
    if (history.replaceState) { history.replaceState(null, "", name === "all" ? "#" : "#" + name); }
  }
  Array.prototype.forEach.call(filters, function (b) {
    b.addEventListener("click", function () { applyFilter(b.dataset.filter); });
  });

  function cellValue(row, column, numeric) {
    var v = row.cells[column] ? row.cells[column].dataset.v : undefined;
    if (v === undefined || v === "") { return null; }
    return numeric ? parseFloat(v) : v;
  }
  Array.prototype.forEach.call(table.tHead.querySelectorAll("button[data-sort]"), function (button) {
    button.addEventListener("click", function () {
      var th = button.parentNode;
      var column = parseInt(button.dataset.sort, 10);
      var numeric = button.dataset.type === "num";
      var descending = th.getAttribute("aria-sort") !== "descending";
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (c) { c.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var sorted = rows.slice().sort(function (a, b) {
        var x = cellValue(a, column, numeric), y = cellValue(b, column, numeric);
        if (x === null || y === null) { return (x === null) - (y === null); }  // empty cells last
        var order = numeric ? x - y : String(x).localeCompare(String(y));
        return descending ? -order : order;
      });
      sorted.forEach(function (r) { body.appendChild(r); });
    });
  });

  var start = location.hash.replace("#", "");
  applyFilter(Object.prototype.hasOwnProperty.call(tests, start) ? start : "all");
}());
