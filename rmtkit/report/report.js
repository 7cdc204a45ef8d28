// rmtkit report: sort, filter and open the rows of each layer table. No library, no network.
(function () {
  "use strict";

  // Each layer is a pair of rows: tr.row (the values) and tr.detail (figures, all values).
  function pairs(tbody) {
    var out = [];
    var rows = tbody.children;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].classList.contains("row")) {
        out.push([rows[i], rows[i].nextElementSibling]);
      }
    }
    return out;
  }

  function cellValue(row, col) {
    var td = row.children[col];
    return td ? td.getAttribute("data-v") : "";
  }

  // Numbers ascending with empty (NaN) last in both directions; text by locale.
  function compare(a, b, numeric, dir) {
    var emptyA = a === "" || a === null, emptyB = b === "" || b === null;
    if (emptyA || emptyB) { return emptyA === emptyB ? 0 : (emptyA ? 1 : -1); }
    var c = numeric ? parseFloat(a) - parseFloat(b) : a.localeCompare(b, undefined, {numeric: true});
    return dir * c;
  }

  function sortBy(table, th) {
    var headers = table.tHead.rows[0].cells;
    var col = Array.prototype.indexOf.call(headers, th);
    var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
    for (var i = 0; i < headers.length; i++) { headers[i].setAttribute("aria-sort", "none"); }
    th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
    var numeric = th.getAttribute("data-type") === "num";
    var tbody = table.tBodies[0];
    var list = pairs(tbody).map(function (p, k) { return {p: p, k: k, v: cellValue(p[0], col)}; });
    list.sort(function (x, y) { return compare(x.v, y.v, numeric, dir) || x.k - y.k; });
    list.forEach(function (item) { tbody.appendChild(item.p[0]); tbody.appendChild(item.p[1]); });
  }

  function toggle(row) {
    var detail = row.nextElementSibling;
    var button = row.querySelector("button.toggle");
    var open = detail.hidden;
    if (open) {
      var host = detail.querySelector("div.panels[data-lazy]");
      var tpl = detail.querySelector("template");
      if (host && tpl) {  // figures are parsed but not drawn until their layer is opened
        host.appendChild(tpl.content.cloneNode(true));
        host.removeAttribute("data-lazy");
        tpl.parentNode.removeChild(tpl);
      }
    }
    detail.hidden = !open;
    row.classList.toggle("open", open);
    if (button) { button.setAttribute("aria-expanded", open ? "true" : "false"); }
  }

  function applyFilter(controls, table) {
    var text = controls.querySelector("input.filter").value.trim().toLowerCase();
    var group = controls.querySelector("select.group").value;
    var shown = 0, all = 0;
    pairs(table.tBodies[0]).forEach(function (p) {
      var g = p[0].getAttribute("data-group");
      var okGroup = group === "" || (group === "flagged" ? g !== "ok" : g === group);
      var okText = text === "" || p[0].getAttribute("data-search").indexOf(text) !== -1;
      var visible = okGroup && okText;
      if (!visible && p[0].classList.contains("open")) { toggle(p[0]); }
      p[0].hidden = !visible;
      all += 1;
      shown += visible ? 1 : 0;
    });
    controls.querySelector(".shown").textContent = shown + " of " + all + " rows";
  }

  function init(table) {
    table.tHead.addEventListener("click", function (ev) {
      var button = ev.target.closest("button.sort");
      if (button) { sortBy(table, button.parentNode); }
    });
    table.tBodies[0].addEventListener("click", function (ev) {
      var row = ev.target.closest("tr.row");
      if (row && !ev.target.closest("a")) { toggle(row); }
    });
    var controls = document.querySelector('.controls[data-table="' + table.id + '"]');
    if (controls) {
      var update = function () { applyFilter(controls, table); };
      controls.querySelector("input.filter").addEventListener("input", update);
      controls.querySelector("select.group").addEventListener("change", update);
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.layers"), init);
})();
