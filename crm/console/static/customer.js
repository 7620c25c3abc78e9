// Customer 360: the graph neighbourhood as a small ECharts graph.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  const data = JSON.parse(document.getElementById("profile-data").textContent);
  const box = document.getElementById("graph");
  if (!window.echarts || !box) { return; }
  const nodes = [{ name: data.customer_id, symbolSize: 30 }];
  const links = [];
  Object.entries(data.relations || {}).forEach(function (kv) {
    (kv[1] || []).forEach(function (edge) {
      const other = edge.other || edge.target || edge.to || edge.id || JSON.stringify(edge).slice(0, 24);
      if (!nodes.some(function (n) { return n.name === other; })) { nodes.push({ name: other, symbolSize: 16 }); }
      links.push({ source: data.customer_id, target: other, label: { show: true, formatter: edge.type || kv[0] },
                   lineStyle: { type: edge.status === "fact" ? "solid" : "dashed" } });
    });
  });
  echarts.init(box).setOption({ animation: false, series: [{ type: "graph", layout: "force", roam: true, label: { show: true }, data: nodes, links: links, force: { repulsion: 120 } }] });
});
