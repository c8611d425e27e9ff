// Polls the job's log endpoint and appends new lines while the job runs; stops once the
// job has finished and its last lines are shown.
(function () {
  "use strict";
  const pre = document.getElementById("job-log");
  if (!pre) { return; }
  const statusEl = document.getElementById("job-live-status");
  const progress = document.getElementById("job-progress");
  const progressText = document.getElementById("job-progress-text");
  const url = pre.dataset.url;
  let next = 0;
  let timer = null;

  function render(data) {
    if (data.lines.length) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(data.lines.join("\n") + "\n"));
      if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    }
    next = data.next;
    statusEl.textContent = data.status + (data.worker ? " on " + data.worker : "");
    statusEl.dataset.status = data.status;
    if (data.finished && !document.getElementById("job-outcome")) {
      const outcome = document.createElement("pre");
      outcome.id = "job-outcome";
      outcome.textContent = data.traceback ? data.traceback : "Result: " + data.result;
      pre.after(outcome);
    }
    if (data.progress) {
      progress.hidden = false;
      progress.max = data.progress.total;
      progress.value = data.progress.done;
      progressText.textContent = data.progress.done + " / " + data.progress.total;
    }
  }

  async function poll() {
    try {
      const response = await fetch(url + "?since=" + next, { credentials: "same-origin" });
      if (!response.ok) {
        statusEl.textContent = "Log unavailable (HTTP " + response.status + ")";
        return;
      }
      const data = await response.json();
      render(data);
      // Keep reading until the finished job's log is drained.
      if (data.finished && data.lines.length === 0) { return; }
    } catch (err) {
      statusEl.textContent = "Connection lost; retrying…";
    }
    timer = setTimeout(poll, 500);
  }
  poll();
  window.addEventListener("beforeunload", function () { clearTimeout(timer); });
})();
