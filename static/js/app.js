// Small behaviours every page may use. Plain ES module, no framework.

// Copy buttons: <button data-copy="text">Copy</button>.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const original = button.textContent;
  try {
    await navigator.clipboard.writeText(button.dataset.copy);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Press Ctrl+C to copy";
  }
  setTimeout(() => { button.textContent = original; }, 2000);
});

// Upload progress: forms with data-upload-progress show a <progress> while
// htmx sends the file (big images on slow links take a while).
document.addEventListener("htmx:xhr:progress", (event) => {
  const form = event.target.closest && event.target.closest("form[data-upload-progress]");
  const bar = form && form.querySelector("progress.upload-progress");
  if (!bar || !event.detail.lengthComputable) return;
  bar.hidden = false;
  bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
});

// The notification bell refreshes itself every 30 s, but only while the tab
// is visible (a tab in the background costs the server nothing), and at once
// when the tab comes back after 30 s or more. htmx runs with allowEval off,
// so its trigger filters ([…]) would be ignored: the check lives here, and
// the bell listens for `notifications-poll` (partials/notifications/bell.html).
const BELL_EVERY_MS = 30000;
let bellPolledAt = Date.now();
function pollBell() {
  if (document.visibilityState !== "visible" || !document.getElementById("notification-bell")) return;
  if (Date.now() - bellPolledAt < BELL_EVERY_MS - 1000) return;
  bellPolledAt = Date.now();
  document.body.dispatchEvent(new CustomEvent("notifications-poll"));
}
setInterval(pollBell, BELL_EVERY_MS);
document.addEventListener("visibilitychange", pollBell);
