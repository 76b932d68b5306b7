// isl-rt report, series page: a slice viewer (scroll bar, wheel, arrow keys), the heat-map
// overlay (on/off, opacity) and the slice-score and APDS curves (click to jump). Our own code;
// no network, no libraries. The page's data is a JSON block (id "series-data"). Slices are numbered
// 0 to n-1 as the CSVs number them; APDS is shown in ppm and heat in % of full heat (pages.py).
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("series-data").textContent);
  var n = data.n;
  var viewer = document.getElementById("viewer");
  var sliceImg = document.getElementById("slice");
  var heatImg = document.getElementById("heat");
  var scroll = document.getElementById("scroll");
  var heatOn = document.getElementById("heat-on");
  var opacity = document.getElementById("heat-opacity");
  var curves = document.getElementById("curves");
  var sliceRows = document.querySelectorAll("#slice-table tbody tr");
  var current = -1;
  var SVG = "http://www.w3.org/2000/svg";
  var marks = [];
  if (viewer && data.aspect) { viewer.style.aspectRatio = String(data.aspect); }  // the pixel spacing's aspect

  var APDS_SCALE = 1e6, HEAT_SCALE = 100;  // ppm and %, as pages.APDS_SCALE and pages.HEAT_SCALE
  function fmt(x, digits) {
    if (x === null || x === undefined) { return "–"; }
    if (x !== 0 && Math.abs(x) < 1e-3) { return x.toExponential(Math.max(0, (digits || 3) - 1)); }
    return Number(x.toPrecision(digits || 4)).toString();
  }
  // a number without an exponent, as pages.readable: "< 0.001" below 0.001, whole numbers from 10^digits
  function readable(x, digits) {
    digits = digits || 3;
    if (x === null || x === undefined) { return "–"; }
    if (x === 0) { return "0"; }
    if (Math.abs(x) < 1e-3) { return x > 0 ? "< 0.001" : "> -0.001"; }
    if (Math.abs(x) >= Math.pow(10, digits)) { return x.toFixed(0); }
    return Number(x.toPrecision(digits)).toString();
  }
  function scaled(values, factor) { return values.map(function (v) { return v === null ? null : v * factor; }); }
  function text(id, value, above) {
    var el = document.getElementById(id);
    if (!el) { return; }
    el.textContent = value;
    if (above !== undefined) { el.className = above ? "above" : ""; }
  }

  // keep every slice decoded, so scrolling never waits on a file
  var cache = [];
  function preload(list) { list.forEach(function (src) { var im = new Image(); im.src = src; cache.push(im); }); }
  preload(data.slices || []);
  preload(data.heats || []);

  function show(i) {
    i = Math.max(0, Math.min(n - 1, i));
    if (i === current) { return; }
    current = i;
    if (sliceImg && data.slices.length) { sliceImg.src = data.slices[i]; }
    if (heatImg && data.heats.length) { heatImg.src = data.heats[i]; }
    if (viewer) { viewer.dataset.slice = String(i); }
    if (scroll) { scroll.value = String(i); }
    text("slice-no", "slice " + i + " of 0–" + (n - 1));
    text("slice-z", data.z && data.z[i] !== null ? "z " + data.z[i].toFixed(1) + " mm" : "");
    text("slice-score", data.scores[i] === null ? "not scored" : "score " + fmt(data.scores[i]) + (data.flagged[i] ? " ▲" : ""), data.flagged[i]);
    text("slice-apds", data.apds[i] === null ? "" : "APDS " + readable(data.apds[i] * APDS_SCALE) + " ppm");
    text("heat-peak", data.peaks && data.peaks.length && data.peaks[i] !== null
      ? "heat peak " + readable(data.peaks[i] * HEAT_SCALE) + " %" : "");
    marks.forEach(function (m) { m(i); });
    Array.prototype.forEach.call(sliceRows, function (r, k) { r.classList.toggle("current", k === i); });
    if (history.replaceState) { history.replaceState(null, "", "#slice=" + i); }
  }

  // ---- input: keys, wheel, scroll bar, slice table ----
  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && t.tagName === "INPUT" && t !== scroll) { return; }  // the opacity slider and the checkbox keep their keys
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    var step = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1, PageDown: 5, PageUp: -5, j: 1, k: -1 }[e.key];
    if (step !== undefined) { show(current + step); e.preventDefault(); return; }
    if (e.key === "Home") { show(0); e.preventDefault(); }
    else if (e.key === "End") { show(n - 1); e.preventDefault(); }
    else if (e.key === "t" || e.key === "T") { show(data.start); }
    else if ((e.key === "h" || e.key === "H") && heatOn) { heatOn.checked = !heatOn.checked; applyHeat(); }
  });
  var wheelRest = 0;
  if (viewer) {
    viewer.addEventListener("wheel", function (e) {
      e.preventDefault();
      wheelRest += e.deltaMode === 0 ? e.deltaY / 60 : e.deltaY;
      var steps = wheelRest > 0 ? Math.floor(wheelRest) : Math.ceil(wheelRest);
      if (steps !== 0) { wheelRest -= steps; show(current + steps); }
    }, { passive: false });
  }
  if (scroll) { scroll.addEventListener("input", function () { show(parseInt(scroll.value, 10)); }); }
  Array.prototype.forEach.call(sliceRows, function (r, k) { r.addEventListener("click", function () { show(k); }); });

  // ---- heat overlay ----
  function applyHeat() {
    if (!heatImg) { return; }
    heatImg.hidden = !(heatOn && heatOn.checked);
    heatImg.style.opacity = String(opacity ? opacity.value / 100 : 0.6);
  }
  if (heatOn) { heatOn.addEventListener("change", applyHeat); }
  if (opacity) { opacity.addEventListener("input", applyHeat); }
  applyHeat();

  // ---- curves: slice score (with the bundle's slice threshold) and APDS per slice, one x axis ----
  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function range(values, extra) {
    var v = values.filter(function (x) { return x !== null; }).concat(extra);
    var lo = Math.min.apply(null, v), hi = Math.max.apply(null, v);
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi <= lo) { hi = lo + 1; }
    return [lo, hi];
  }
  function chart(svg, top, height, values, opts) {
    var W = 410, left = 52, right = 8;
    var plotW = W - left - right;
    var span = opts.zero ? [0, range(values, []).pop()] : range(values, opts.threshold !== null ? [opts.threshold] : []);
    var lo = span[0], hi = span[1] + (span[1] - span[0]) * 0.06;
    function x(i) { return left + (i + 0.5) * plotW / n; }  // slice i in the middle of its slot
    function y(v) { return top + height - ((v - lo) / (hi - lo)) * height; }
    el("text", { x: left + 4, y: top - 5, "class": "title" }, svg).textContent = opts.title;
    for (var g = 0; g <= 3; g++) {
      var gv = lo + (hi - lo) * g / 3;
      el("line", { x1: left, x2: W - right, y1: y(gv), y2: y(gv), "class": "grid" }, svg);
      el("text", { x: left - 6, y: y(gv) + 4, "text-anchor": "end", "class": "tick" }, svg).textContent = fmt(gv, 2);
    }
    el("line", { x1: left, x2: left, y1: top, y2: top + height, "class": "axis" }, svg);
    el("line", { x1: left, x2: W - right, y1: top + height, y2: top + height, "class": "axis" }, svg);
    var shapes = [];
    if (opts.bars) {
      var bw = Math.max(1, plotW / n * 0.7);
      values.forEach(function (v, i) {
        shapes.push(v === null ? null : el("rect", { x: x(i) - bw / 2, y: y(v), width: bw, height: Math.max(0, top + height - y(v)), "class": "bar" }, svg));
      });
    } else {
      var d = "";
      values.forEach(function (v, i) { if (v !== null) { d += (d ? " L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1); } });
      el("path", { d: d, "class": "line" }, svg);
      if (opts.threshold !== null) {
        el("line", { x1: left, x2: W - right, y1: y(opts.threshold), y2: y(opts.threshold), "class": "threshold" }, svg);
        el("text", { x: W - right - 4, y: y(opts.threshold) - 4, "text-anchor": "end", "class": "threshold-label" }, svg)
          .textContent = opts.thresholdLabel + " " + fmt(opts.threshold);
      }
      values.forEach(function (v, i) {
        shapes.push(v === null ? null : el("circle", { cx: x(i), cy: y(v), r: 2.6, "class": "dot" + (data.flagged[i] ? " above" : "") }, svg));
      });
    }
    var cursor = el("line", { x1: x(0), x2: x(0), y1: top, y2: top + height, "class": "cursor" }, svg);
    marks.push(function (i) {
      cursor.setAttribute("x1", x(i)); cursor.setAttribute("x2", x(i));
      shapes.forEach(function (s, k) { if (s) { s.classList.toggle("current", k === i); } });
    });
    return { x0: left, x1: W - right, width: W, slot: plotW / n };
  }
  if (curves && n > 0) {
    var svg = el("svg", { viewBox: "0 0 410 282", role: "img", id: "curve-svg" }, curves);
    var title = el("title", {}, svg);
    title.textContent = "Slice score and APDS per slice; click to show a slice";
    // the slice threshold flags slices (the slices CSV's flagged); the scan threshold is for scan scores only
    var geometry = chart(svg, 18, 150, data.scores, { title: "slice score", threshold: data.slice_threshold,
                                                      thresholdLabel: "slice threshold", bars: false, zero: false });
    chart(svg, 200, 60, scaled(data.apds, APDS_SCALE), { title: "APDS (ppm)", threshold: null, bars: true, zero: true });
    var ends = data.z ? [" (inferior)", " (superior)"] : ["", ""];
    el("text", { x: geometry.x0, y: 278, "class": "tick" }, svg).textContent = "slice 0" + ends[0];
    el("text", { x: geometry.x1, y: 278, "text-anchor": "end", "class": "tick" }, svg).textContent = "slice " + (n - 1) + ends[1];
    svg.addEventListener("click", function (e) {
      var box = svg.getBoundingClientRect();
      var px = (e.clientX - box.left) * geometry.width / box.width;
      show(Math.floor((px - geometry.x0) / geometry.slot));  // show() clamps to the first and last slice
    });
  }

  var wanted = /#slice=(\d+)/.exec(location.hash);
  show(wanted ? parseInt(wanted[1], 10) : data.start);
  if (viewer) { viewer.focus({ preventScroll: true }); }
}());
