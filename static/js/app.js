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
