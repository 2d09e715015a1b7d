// Replays in parts: a recording that moved to another server midway is
// several files. When one ends, the next plays in the same player.
for (const video of document.querySelectorAll("video.replay-video[data-next]")) {
  const next = video.dataset.next.split(" ").filter(Boolean);
  video.addEventListener("ended", () => {
    const src = next.shift();
    if (!src) return;
    video.src = src;
    video.play().catch(() => {});
  });
}
