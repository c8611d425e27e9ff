// The live job panel (workers/job_live.html): polls the job's log endpoint, appends new log
// lines and redraws the summary from the same answer, so the state, duration, result and
// log never disagree. Stops once the job has ended and its last lines are shown; a page
// that asks for it (data-reload-on-end) is reloaded once when the job ends while watched.
// When nothing more will change (no poll, no reload to come) the panel says so with
// data-settled="1".
(function () {
  "use strict";
  const root = document.getElementById("job-live");
  if (!root) { return; }
  const pre = document.getElementById("job-log");
  const summary = document.getElementById("job-summary");
  const note = document.getElementById("job-poll-note");
  const url = root.dataset.url;
  const endedBeforeLoad = root.dataset.finished === "1";
  const reloadOnEnd = root.dataset.reloadOnEnd === "1";
  let next = 0;
  let shownSummary = null;
  let timer = null;
  // Django's messages are shown once: the reload at the job's end would drop the one that
  // said what was just done ("Queued now"). It is carried over the reload and shown again.
  const KEPT = "opsqueue-job-messages:" + url;
  const kept = sessionStorage.getItem(KEPT);
  sessionStorage.removeItem(KEPT);
  const content = document.getElementById("content");
  if (kept && content && !document.querySelector("ul.messagelist")) {
    content.insertAdjacentHTML("beforebegin", kept);
  }

  function render(data) {
    if (data.lines.length) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(document.createTextNode(data.lines.join("\n") + "\n"));
      if (atBottom) { pre.scrollTop = pre.scrollHeight; }
    }
    next = data.next;
    if (data.summary_html !== shownSummary) {
      summary.innerHTML = data.summary_html;
      shownSummary = data.summary_html;
    }
    root.dataset.status = data.status;
    note.textContent = "";
  }

  async function poll() {
    let delay = 500;
    try {
      const response = await fetch(url + "?since=" + next, { credentials: "same-origin" });
      if (!response.ok) {
        // 403: logged out meanwhile (another tab, an expired session) or the permission
        // was taken away; "Log unavailable" alone left the person guessing.
        note.textContent = response.status === 403
          ? "Not following the log any more: you are logged out, or may no longer see this job. Reload the page."
          : "Log unavailable (HTTP " + response.status + ")";
        return;
      }
      const data = await response.json();
      render(data);
      // Keep reading until the finished job's log is drained.
      if (data.finished && data.lines.length === 0) {
        root.dataset.finished = "1";
        // An ended job that wrote nothing: say so, not an empty black box.
        if (!pre.textContent) {
          pre.textContent = "The job wrote no log lines.";
          pre.classList.add("job-log-empty");
        }
        if (reloadOnEnd && !endedBeforeLoad) {
          const shown = document.querySelector("ul.messagelist");
          if (shown) { sessionStorage.setItem(KEPT, shown.outerHTML); }
          window.location.reload();
        } else {
          root.dataset.settled = "1";
        }
        return;
      }
      // One answer carries about 1 MB at most; a log far ahead is read without pausing.
      if (data.more) { delay = 0; }
    } catch (err) {
      note.textContent = "Connection lost; retrying…";
    }
    timer = setTimeout(poll, delay);
  }
  poll();
  window.addEventListener("beforeunload", function () { clearTimeout(timer); });
})();
