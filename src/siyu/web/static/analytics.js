// Draws the chart of an analytics page (funnel, retention, repurchase, RFM, CLV, ROI) from the JSON embedded in it.
(function () {
  "use strict";
  var COLORS = ["#07a35a", "#0b6bcb", "#f0a020", "#d13b3b", "#7c4dff", "#00a3bf", "#8d6e63", "#e91e63", "#9aa4b1"];
  var MUTED = { color: "#6b7280", fontSize: 14, fontWeight: "normal" };

  // ECharts renders a formatter's return value as HTML: every name in it (steps, series, cohorts, labels)
  // can be text a user typed, so it is escaped here, once, at the point it becomes markup.
  var HTML_ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  function esc(v) { return String(v === null || v === undefined ? "" : v).replace(/[&<>"']/g, function (c) { return HTML_ESCAPES[c]; }); }
  function pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%"; }
  function yuan(fen) { return "¥" + (fen / 100).toLocaleString(undefined, { maximumFractionDigits: 0 }); }
  function maxOf(rows, i) { return rows.reduce(function (m, r) { return r[i] === null ? m : Math.max(m, r[i]); }, 0); }
  function emptyTitle(text) { return { text: text, left: "center", top: "middle", textStyle: MUTED }; }

  function funnel(d) {
    var single = d.series.length === 1;
    var empty = d.series.every(function (s) { return !s.counts[0]; });
    var series = d.series.map(function (s) {
      return {
        name: s.name, type: "bar", data: s.counts, barMaxWidth: 48,
        label: { show: single, position: "right", formatter: function (p) { return p.value + "  (" + pct(s.conv[p.dataIndex]) + ")"; } }
      };
    });
    return {
      tooltip: {
        trigger: "axis", axisPointer: { type: "shadow" },
        formatter: function (items) {
          var lines = [esc(items[0].axisValueLabel)];
          items.forEach(function (it) {
            var s = d.series[it.seriesIndex], i = it.dataIndex;
            var line = it.marker + esc(it.seriesName) + ": " + esc(it.value) + " (" + pct(s.conv[i]) + ")";
            if (i > 0) { line += " · " + esc(d.labels.previous) + " " + pct(s.prev[i]) + " · " + esc(d.labels.median) + " " + esc(s.median[i]); }
            lines.push(line);
          });
          return lines.join("<br>");
        }
      },
      legend: single ? undefined : { type: "scroll", top: 0 },
      grid: { left: 16, right: 120, top: single ? 16 : 40, bottom: 16, containLabel: true },
      // Horizontal bars, first step on top: the classic funnel read top to bottom.
      yAxis: { type: "category", data: d.steps, inverse: true },
      xAxis: { type: "value", minInterval: 1, name: d.labels.count },
      title: empty ? emptyTitle(d.empty) : undefined,
      series: series
    };
  }

  function retention(d) {
    return {
      tooltip: {
        position: "top",
        formatter: function (p) {
          return esc(d.cohorts[p.value[1]]) + "<br>" + esc(d.labels.period) + " " + esc(d.periods[p.value[0]]) + ": " +
            esc(p.value[2]) + "% (" + esc(p.value[3]) + ")";
        }
      },
      grid: { left: 16, right: 72, top: 16, bottom: 40, containLabel: true },
      xAxis: { type: "category", data: d.periods, name: d.labels.period, nameLocation: "middle", nameGap: 28, splitArea: { show: true } },
      yAxis: { type: "category", data: d.cohorts, inverse: true, splitArea: { show: true } },
      // Colour by the rate (dimension 2; the last one is the count), scaled to the highest rate shown.
      visualMap: { dimension: 2, min: 0, max: Math.max(1, maxOf(d.cells, 2)), calculable: true, orient: "vertical",
                   right: 0, top: "middle", itemHeight: 160, precision: 1, formatter: "{value}%",
                   inRange: { color: ["#f2fbf6", "#07a35a"] } },
      title: d.cells.length ? undefined : emptyTitle(d.empty),
      series: [{ name: d.labels.rate, type: "heatmap", data: d.cells, label: { show: d.periods.length <= 16, formatter: function (p) { return p.value[2] + "%"; } } }]
    };
  }

  function repurchase(d) {
    var empty = d.series.every(function (s) { return s.data.every(function (v) { return v === null || v === 0; }); });
    return {
      tooltip: { trigger: "axis", valueFormatter: function (v) { return v === null || v === undefined ? "—" : v + "%"; } },
      legend: { type: "scroll", top: 0 },
      grid: { left: 16, right: 24, top: 40, bottom: 32, containLabel: true },
      xAxis: { type: "category", data: d.days, name: d.labels.day, nameLocation: "middle", nameGap: 24, boundaryGap: false },
      yAxis: { type: "value", name: d.labels.share, axisLabel: { formatter: "{value}%" }, min: 0 },
      title: empty ? emptyTitle(d.empty) : undefined,
      series: d.series.map(function (s, i) {
        return { name: s.name, type: "line", step: "end", symbol: "none", data: s.data, connectNulls: false,
                 lineStyle: { width: i === 0 ? 3 : 1.5 }, z: i === 0 ? 10 : 2 };
      })
    };
  }

  function rfm(d) {
    var max = Math.max(1, maxOf(d.cells, 2));
    var scores = ["1", "2", "3", "4", "5"];
    return {
      tooltip: {
        formatter: function (p) {
          var v = p.value;
          return "R " + (v[1] + 1) + " · F " + (v[0] + 1) + "<br>" + esc(d.labels.buyers) + ": " + esc(v[2]) +
            "<br>" + esc(d.labels.mean) + ": " + yuan(v[3]) + "<br>" + esc(d.labels.total) + ": " + yuan(v[4]);
        }
      },
      grid: { left: 48, right: 72, top: 16, bottom: 40, containLabel: true },
      xAxis: { type: "category", data: scores, name: d.labels.f, nameLocation: "middle", nameGap: 28, splitArea: { show: true } },
      yAxis: { type: "category", data: scores, name: d.labels.r, nameLocation: "middle", nameRotate: 90, nameGap: 28, splitArea: { show: true } },
      // Colour by buyers (dimension 2), not by the money columns after it.
      visualMap: { dimension: 2, min: 0, max: max, calculable: true, orient: "vertical", right: 0, top: "middle", itemHeight: 160,
                   inRange: { color: ["#eef5fd", "#0b6bcb"] } },
      title: d.cells.length ? undefined : emptyTitle(d.empty),
      series: [{ name: d.labels.buyers, type: "heatmap", data: d.cells, label: { show: true, formatter: function (p) { return p.value[2]; } } }]
    };
  }

  function clv(d) {
    // Narrow bins (under one yuan) need the fen to tell their edges apart.
    var narrow = d.bins.length > 0 && d.bins[0][1] - d.bins[0][0] < 100;
    function edge(fen) {
      return "¥" + (fen / 100).toLocaleString(undefined, { minimumFractionDigits: narrow ? 2 : 0, maximumFractionDigits: narrow ? 2 : 0 });
    }
    return {
      tooltip: {
        trigger: "axis", axisPointer: { type: "shadow" },
        formatter: function (items) {
          var b = d.bins[items[0].dataIndex];
          return edge(b[0]) + " – " + edge(b[1]) + "<br>" + esc(d.labels.customers) + ": " + esc(b[2]);
        }
      },
      // containLabel leaves the axis names out: room above for the y name and below for the x name.
      grid: { left: 16, right: 16, top: 44, bottom: 40, containLabel: true },
      xAxis: { type: "category", name: d.labels.clv, nameLocation: "middle", nameGap: 28,
               data: d.bins.map(function (b) { return edge(b[0]); }), axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", minInterval: 1, name: d.labels.customers, nameGap: 14,
               nameTextStyle: { align: "left" } },
      title: d.bins.length ? undefined : emptyTitle(d.empty),
      series: [{ name: d.labels.customers, type: "bar", barCategoryGap: "4%", data: d.bins.map(function (b) { return b[2]; }) }]
    };
  }

  function roi(d) {
    return {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" },
                 valueFormatter: function (v) { return "¥" + Number(v).toLocaleString(undefined, { maximumFractionDigits: 2 }); } },
      legend: { top: 0 },
      grid: { left: 16, right: 16, top: 40, bottom: 16, containLabel: true },
      xAxis: { type: "category", data: d.channels, axisLabel: { interval: 0, hideOverlap: true } },
      yAxis: { type: "value", axisLabel: { formatter: "¥{value}" } },
      title: d.channels.length ? undefined : emptyTitle(d.empty),
      series: d.series.map(function (s) { return { name: s.name, type: "bar", data: s.data, barMaxWidth: 36 }; })
    };
  }

  var BUILDERS = { funnel: funnel, retention: retention, repurchase: repurchase, rfm: rfm, clv: clv, roi: roi };

  function draw() {
    var el = document.getElementById("analytics-chart");
    var dataEl = document.getElementById("analytics-chart-data");
    if (!el || !dataEl || typeof echarts === "undefined") { return; }
    var data = JSON.parse(dataEl.textContent);
    var build = BUILDERS[data.kind];
    if (!build) { return; }
    var chart = echarts.init(el, null, { renderer: "canvas" });
    var option = build(data);
    option.color = COLORS;
    chart.setOption(option);
    if (data.kind === "rfm") {
      // A cell opens the list of its buyers (value: [F - 1, R - 1, buyers, ...]).
      chart.on("click", function (p) {
        if (p.value && p.value[2] > 0) {
          window.location.href = "/analytics/rfm/customers?r=" + (p.value[1] + 1) + "&f=" + (p.value[0] + 1);
        }
      });
    }
    el.setAttribute("data-rendered", "true");
    window.addEventListener("resize", function () { chart.resize(); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
