// One click, one request: a form posted from an admin page (Run diagnostic job, Plan, Approve
// and apply, Retry, an action's Go or Yes) is sent once, however fast it is clicked again.
// A double click used to post twice: two diagnostic jobs, two terraform runs, the second
// waiting behind the first. A page shown again by the browser's Back button sends again.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || form.method.toLowerCase() !== "post") { return; }
    if (form.dataset.sent === "1") {
      event.preventDefault();
      return;
    }
    // A submission another script stopped (e.g. a confirm() answered no) was not sent.
    if (!event.defaultPrevented) { form.dataset.sent = "1"; }
  });
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) { return; }
    document.querySelectorAll("form[data-sent]").forEach(function (form) {
      delete form.dataset.sent;
    });
  });
})();
