// Chat panels: scrolling only. New messages keep the list pinned to the
// bottom unless the reader has scrolled up; then they are counted on a
// "N new messages" button that jumps down. The panel's SSE URL follows the
// last event received, so a reconnect that htmx's sse extension makes from
// scratch (without Last-Event-ID) still resumes where this page left off.
// Everything else (posting, live messages, deletion) is htmx and the server.

const NEAR_BOTTOM = 48; // px
const MAX_MESSAGES = 500;

function setUp(panel) {
  if (panel.dataset.chatReady) return;
  panel.dataset.chatReady = "1";
  const list = panel.querySelector(".chat-messages");
  const scroller = panel.querySelector(".chat-scroll");
  const jump = panel.querySelector(".chat-jump");
  if (!list || !scroller || !jump) return;

  let pinned = true;
  let unseen = 0;
  const atBottom = () => scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < NEAR_BOTTOM;
  const toBottom = () => { scroller.scrollTop = scroller.scrollHeight; };
  const showUnseen = () => {
    jump.hidden = unseen === 0;
    jump.textContent = unseen === 1 ? "1 new message ↓" : `${unseen} new messages ↓`;
  };

  scroller.addEventListener("scroll", () => {
    pinned = atBottom();
    if (pinned && unseen) { unseen = 0; showUnseen(); }
  }, { passive: true });
  jump.addEventListener("click", () => {
    unseen = 0; showUnseen(); toBottom(); pinned = true;
  });

  panel.addEventListener("htmx:sseMessage", (event) => {
    const message = event.detail;
    if (message && message.lastEventId) {
      const url = new URL(panel.getAttribute("sse-connect"), location.href);
      url.searchParams.set("after", message.lastEventId);
      panel.setAttribute("sse-connect", url.pathname + url.search);
    }
    if (!message || message.type !== "chat") return;
    if (pinned) {
      // Long sessions: keep the newest messages only.
      while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
      toBottom();
    } else {
      unseen += 1;
      showUnseen();
    }
  });

  toBottom();
}

function setUpAll(root) {
  for (const panel of root.querySelectorAll("[data-chat]")) setUp(panel);
}

setUpAll(document);
// Panels swapped in later (htmx fragments, the closed panel after access ends).
document.addEventListener("htmx:load", (event) => setUpAll(event.target.parentElement || document));
