// fleet dashboard: an action's outcome, the select-all box, and the throughput chart.
(function () {
  "use strict";
  function flash(text, ok) {
    const box = document.getElementById("flash");
    box.textContent = text;  // textContent: whatever the controller said is shown, not parsed
    box.className = ok ? "ok" : "bad";
  }
  document.body.addEventListener("htmx:afterRequest", function (event) {
    const verb = (event.detail.requestConfig || {}).verb;
    if (verb !== "post") return;
    const xhr = event.detail.xhr;
    if (xhr.status >= 200 && xhr.status < 300) {
      flash("done", true);
      window.location.reload();
      return;
    }
    let message = "request failed (" + xhr.status + ")";
    try { message = JSON.parse(xhr.responseText).error || message; } catch (e) { /* not JSON */ }
    flash(message, false);
  });
  document.body.addEventListener("change", function (event) {
    if (event.target.id !== "select-all") return;
    document.querySelectorAll("input[name=ids]").forEach(function (box) {
      box.checked = event.target.checked;
    });
  });
  function drawChart() {
    const holder = document.getElementById("chart");
    if (!holder || holder.dataset.drawn) return;
    holder.dataset.drawn = "1";
    fetch(holder.dataset.src, {credentials: "same-origin"}).then(function (r) {
      return r.json();
    }).then(function (h) {
      if (!h.t || h.t.length < 2) {
        holder.textContent = "collecting: a point every sample interval, for an hour";
        return;
      }
      new uPlot({width: Math.min(holder.clientWidth || 800, 1000), height: 220,
        series: [{}, {label: "completed/s", stroke: "#2a7"}, {label: "failed/s", stroke: "#c33"}]},
        [h.t, h.completed_per_s, h.failed_per_s], holder);
    }).catch(function () { holder.textContent = "chart unavailable"; });
  }
  drawChart();
  setInterval(function () {
    const holder = document.getElementById("chart");
    if (holder) { holder.textContent = ""; delete holder.dataset.drawn; drawChart(); }
  }, 60000);
})();
