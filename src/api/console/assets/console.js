// The console's one script: the alert list follows the supervision stream, so new alerts and
// escalations appear without reloading. Every page works without it.
"use strict";
(function () {
  var table = document.getElementById("alerts");
  if (!table || !window.EventSource) { return; }
  var labels = { warning: "预警", yellow: "黄牌", red: "红牌" };
  var source = new EventSource(table.getAttribute("data-stream"));
  var live = document.getElementById("live");
  source.addEventListener("open", function () { if (live) { live.hidden = false; } });
  source.addEventListener("alert", function (message) {
    var alert;
    try { alert = JSON.parse(message.data); } catch (e) { return; }
    var id = alert.id;
    if (!id) { return; }
    var body = table.tBodies[0];
    var row = body.querySelector('tr[data-alert="' + CSS.escape(id) + '"]');
    if (!row) {
      row = document.createElement("tr");
      row.setAttribute("data-alert", id);
      for (var i = 0; i < 7; i++) { row.appendChild(document.createElement("td")); }
      var link = document.createElement("a");
      link.href = "/console/alerts/" + encodeURIComponent(id);
      link.textContent = alert.rule || id;
      row.cells[1].appendChild(link);
      row.cells[2].textContent = alert.system || "";
      row.cells[3].textContent = alert.application_id || "—";
      row.cells[4].textContent = (alert.at || alert.raised_at || "").replace("T", " ").slice(0, 16);
      row.cells[6].textContent = "未督办";
      body.insertBefore(row, body.firstChild);
    }
    var level = alert.level || "warning";
    var badge = document.createElement("span");
    badge.className = "badge " + level;
    badge.textContent = labels[level] || level;
    row.cells[0].replaceChildren(badge);
    row.cells[5].textContent = alert.change === "resolved" ? "已解除" : "未解除";
    row.className = "level-" + level + " fresh";
  });
})();
