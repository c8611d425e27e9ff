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
    async function poll() {
      try {
        const response = await fetch(url, { credentials: "same-origin" });
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
