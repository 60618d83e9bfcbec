// Draws the "customers added per day by source" chart from the JSON embedded in the page.
(function () {
  "use strict";
  function draw() {
    var el = document.getElementById("added-chart");
    var dataEl = document.getElementById("added-chart-data");
    if (!el || !dataEl || typeof echarts === "undefined") { return; }
    var data = JSON.parse(dataEl.textContent);
    var chart = echarts.init(el, null, { renderer: "canvas" });
    var series = data.series.map(function (s) {
      return { name: s.name, type: "bar", stack: "added", data: s.data, emphasis: { focus: "series" } };
    });
    series.push({
      name: data.total_name, type: "line", data: data.totals, smooth: true, symbol: "none",
      lineStyle: { width: 2, color: "#16202e" }, itemStyle: { color: "#16202e" }, z: 10
    });
    var empty = data.totals.every(function (n) { return n === 0; });
    chart.setOption({
      color: ["#07a35a", "#0b6bcb", "#f0a020", "#d13b3b", "#7c4dff", "#00a3bf", "#8d6e63", "#e91e63", "#9aa4b1"],
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      legend: { type: "scroll", top: 0 },
      grid: { left: 40, right: 16, top: 40, bottom: 56 },
      xAxis: { type: "category", data: data.days, axisLabel: { hideOverlap: true } },
      yAxis: { type: "value", minInterval: 1 },
      dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
      title: empty ? { text: data.empty, left: "center", top: "middle", textStyle: { color: "#6b7280", fontSize: 14, fontWeight: "normal" } } : undefined,
      series: series
    });
    el.setAttribute("data-rendered", "true");
    window.addEventListener("resize", function () { chart.resize(); });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
