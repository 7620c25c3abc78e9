// Overview: draws the charts and refreshes every number from the JSON twin of the page.
"use strict";
(function () {
  const pct = function (v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; };
  const num = function (v) {
    if (v === null || v === undefined) { return "–"; }
    return Number.isInteger(v) ? String(v) : Number(v).toFixed(1);
  };
  let charts = null;
  function draw(data) {
    if (!window.echarts) { return; }
    if (charts === null) {
      charts = [echarts.init(document.getElementById("chart-messages")),
                echarts.init(document.getElementById("chart-rates"))];
      charts[0].on("click", function (p) { window.location.assign("/console/drill/" + p.name); });
    }
    const names = data.by_channel.map(function (r) { return r.channel; });
    const box = document.getElementById("chart-messages");
    charts[0].setOption({
      animation: false, tooltip: {}, title: { text: box.getAttribute("aria-label"), textStyle: { fontSize: 14 } }, xAxis: { type: "category", data: names }, yAxis: {},
      series: [{ name: "messages", type: "bar", data: data.by_channel.map(function (r) { return r.messages; }) }],
    });
    charts[1].setOption({
      animation: false, tooltip: {}, legend: { right: 0 },
      title: { text: document.getElementById("chart-rates").getAttribute("aria-label"), textStyle: { fontSize: 14 } }, xAxis: { type: "category", data: names },
      yAxis: { max: 1 },
      series: [
        { name: "auto", type: "bar", data: data.by_channel.map(function (r) { return r.auto_answered_share; }) },
        { name: "resolved", type: "bar", data: data.by_channel.map(function (r) { return r.auto_resolved_share; }) },
        { name: "handoff", type: "bar", data: data.by_channel.map(function (r) { return r.handoff_rate; }) },
      ],
    });
  }
  function fill(data) {
    document.querySelectorAll("[data-value]").forEach(function (node) {
      const key = node.dataset.value;
      const card = node.closest("[data-format]");
      const value = key === "queue_length" ? data.queue.length : data.total[key];
      node.textContent = card && card.dataset.format === "pct" ? pct(value) : num(value);
    });
    document.getElementById("refreshed").textContent = data.until;
    draw(data);
  }
  async function refresh() {
    const hours = document.getElementById("hours").value;
    try {
      fill(await window.scrm.api("GET", "/console/api/overview?hours=" + encodeURIComponent(hours)));
    } catch (e) { /* keep the last numbers */ }
  }
  document.addEventListener("DOMContentLoaded", function () {
    draw(JSON.parse(document.getElementById("overview-data").textContent));
    setInterval(refresh, 10000);
  });
})();
