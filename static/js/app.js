// Small behaviours every page may use. Plain ES module, no framework.

// Phones: the navigation folds behind its Menu button (without JavaScript
// it stays unfolded, wrapping).
document.documentElement.classList.add("js");
document.querySelector(".nav-toggle")?.addEventListener("click", (event) => {
  const button = event.currentTarget;
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", String(open));
  document.getElementById(button.getAttribute("aria-controls"))?.classList.toggle("open", open);
});

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

// Local times: pages carry <time datetime> with a UTC label ("2026-11-22
// 18:00 UTC") that reads right without JavaScript; here each is shown in the
// viewer's own zone, named ("22 Nov 2026, 19:00 CET"), the UTC label kept as
// its tooltip. Titles holding a UTC label get the local time too, and the
// "Times are UTC." notes name the zone. Runs again on what htmx swaps in.
const LOCAL = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  timeZoneName: "short",
});
// Chat times are short: the hour and minute, the date and zone in the tooltip.
const LOCAL_CLOCK = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
const UTC_LABEL = /\d{1,2}:\d{2} UTC$/;

function localTime(iso) {
  const at = Date.parse(iso);
  return Number.isNaN(at) ? null : LOCAL.format(at);
}

// `root` and the elements under it that match `selector`.
function within(root, selector) {
  if (!root.querySelectorAll) return [];
  return [...(root.matches?.(selector) ? [root] : []), ...root.querySelectorAll(selector)];
}

function localizeTimes(root) {
  for (const el of within(root, "time[datetime]")) {
    if (el.dataset.local) continue; // done already
    const local = localTime(el.getAttribute("datetime"));
    if (!local) continue;
    const text = el.textContent.trim();
    if (UTC_LABEL.test(text)) {
      const short = el.classList.contains("chat-time");
      el.title = short ? local : text;
      el.textContent = short ? LOCAL_CLOCK.format(Date.parse(el.getAttribute("datetime"))) : local;
      el.dataset.local = ZONE;
    } else if (UTC_LABEL.test(el.title)) {
      el.title = local;
    }
  }
  for (const note of within(root, ".times-note")) {
    note.textContent = `Times are in your time zone (${ZONE}).`;
  }
}
localizeTimes(document);
document.addEventListener("htmx:load", (event) => localizeTimes(event.target));

// Relative times ("in 2 h 5 min", "live for 1 h 5 min") tick on every page
// with the server's words (web::view::relative_start and live_for), so the
// home card and the watch page say the same thing: <time data-tick="until">
// counts down to its datetime, <time data-tick="since"> up from it.
function span(seconds) {
  const minutes = Math.floor(seconds / 60);
  const [days, hours, mins] = [Math.floor(minutes / 1440), Math.floor(minutes / 60) % 24, minutes % 60];
  if (days === 0 && hours === 0) return `${mins} min`;
  if (days === 0) return mins === 0 ? `${hours} h` : `${hours} h ${mins} min`;
  return days === 1 ? "1 day" : `${days} days`;
}

function relative(kind, at, now) {
  const seconds = Math.floor(Math.abs(at - now) / 1000);
  if (kind === "since") return seconds < 60 ? "just started" : `live for ${span(seconds)}`;
  return at - now < 60000 ? "any minute now" : `in ${span(seconds)}`;
}

function tickRelative(root = document) {
  const now = Date.now();
  for (const el of within(root, "time[data-tick]")) {
    const at = Date.parse(el.getAttribute("datetime"));
    if (!Number.isNaN(at)) el.textContent = relative(el.dataset.tick, at, now);
  }
}
tickRelative();
setInterval(tickRelative, 15000);
document.addEventListener("htmx:load", (event) => tickRelative(event.target));
