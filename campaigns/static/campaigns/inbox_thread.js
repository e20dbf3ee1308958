/*
 * The inbox thread page: when htmx swaps in a fresh #thread-live, the page
 * follows the number's opt-out state it carries (data-opted-out): the
 * state line, which opt-out form shows, and whether the reply box can send.
 * The reply's text is never touched (a disabled textarea keeps its value).
 */
(function () {
  "use strict";

  function follow(live) {
    if (!live || live.id !== "thread-live") return;
    var optedOut = live.getAttribute("data-opted-out") === "true";
    var state = document.getElementById("thread-optout-state");
    if (state) {
      state.textContent = live.getAttribute("data-optout-words") || "";
      state.classList.toggle("is-opted-out", optedOut);
      state.setAttribute("data-opted-out", optedOut ? "true" : "false");
    }
    var outForm = document.querySelector(".thread-optout-form");
    var inForm = document.querySelector(".thread-optin-form");
    if (outForm) outForm.hidden = optedOut;
    if (inForm) inForm.hidden = !optedOut;

    var form = document.querySelector(".thread-reply-form");
    var refusal = document.querySelector(".thread-reply-refusal");
    if (!form || !refusal) return;
    // Only the opt-out can change while the page is open; other refusals stay.
    if (form.getAttribute("data-may-act") !== "true" || form.getAttribute("data-account-inactive") === "true") return;
    var text = form.querySelector("textarea");
    var send = form.querySelector("button[type=submit]");
    if (text) text.disabled = optedOut;
    if (send) send.disabled = optedOut;
    refusal.textContent = optedOut ? refusal.getAttribute("data-refusal-for-opted-out") : "";
    refusal.hidden = !optedOut;
  }

  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail && event.detail.target;
    // outerHTML swaps report the old element: read the one now in the page.
    if (target && target.id === "thread-live") follow(document.getElementById("thread-live"));
  });
})();
