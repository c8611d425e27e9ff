// A page section that follows a record while a worker changes it (e.g. a course's cover
// while its variants are made): polls data-live-url, which answers {html, finished}, and
// redraws the section until the record is settled.
(function () {
  "use strict";
  document.querySelectorAll("[data-live-url]").forEach(function (section) {
    if (section.dataset.livePolling || section.dataset.liveFinished === "1") { return; }
    section.dataset.livePolling = "1";
    const url = section.dataset.liveUrl;
    let shown = null;
    // Polling stops for good, saying why: signed out (the answer is the login page),
    // refused (the permission was taken away) or gone. Retrying those every second
    // changed nothing on screen and never ended.
    function stop(why) {
      const note = document.createElement("p");
      note.className = "live-stopped";
      note.textContent = why;
      section.append(note);
      section.dataset.liveStopped = "1";
    }
    async function poll() {
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        const json = (response.headers.get("content-type") || "").startsWith("application/json");
        if (response.redirected || (response.ok && !json)) {
          stop("Not following this any more: you are logged out. Log in again, then reload the page.");
          return;
        }
        if ([401, 403, 404, 410].includes(response.status)) {
          stop("Not following this any more (HTTP " + response.status + "): reload the page.");
          return;
        }
        if (response.ok) {
          const data = await response.json();
          if (data.html !== shown) {
            section.innerHTML = data.html;
            shown = data.html;
          }
          if (data.finished) { return; }
        }
      } catch (err) {
        // Try again: the server may be restarting.
      }
      setTimeout(poll, 1000);
    }
    poll();
  });
})();
