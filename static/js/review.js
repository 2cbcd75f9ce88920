// Keyboard review on the article page, the lightbox, and copy-to-clipboard buttons.
// Plain JS, no dependencies; every action also works by mouse and without JS (forms and links).
(function () {
  "use strict";
  const tiles = () => Array.from(document.querySelectorAll("[data-candidate]"));
  const lightbox = document.getElementById("lightbox");
  const help = document.getElementById("keyboard-help");
  let lastFocusedId = null;

  function focusTile(tile) {
    if (!tile) return;
    tile.focus();
    tile.scrollIntoView({ block: "nearest" });
  }

  function currentTile() {
    const active = document.activeElement;
    return active ? active.closest("[data-candidate]") : null;
  }

  // Up and down pick the tile in the next row whose centre is nearest horizontally.
  function verticalNeighbour(tile, direction) {
    const box = tile.getBoundingClientRect();
    const centre = box.left + box.width / 2;
    let best = null;
    let bestScore = Infinity;
    for (const other of tiles()) {
      const b = other.getBoundingClientRect();
      const dy = direction > 0 ? b.top - box.bottom : box.top - b.bottom;
      if (dy < -1) continue;
      const score = Math.max(dy, 0) * 10 + Math.abs(b.left + b.width / 2 - centre);
      if (other !== tile && score < bestScore) {
        best = other;
        bestScore = score;
      }
    }
    return best;
  }

  function move(key) {
    const all = tiles();
    if (!all.length) return;
    const tile = currentTile();
    if (!tile) return focusTile(all[0]);
    const i = all.indexOf(tile);
    if (key === "ArrowLeft" || key === "h") focusTile(all[Math.max(i - 1, 0)]);
    else if (key === "ArrowRight" || key === "l") focusTile(all[Math.min(i + 1, all.length - 1)]);
    else if (key === "ArrowDown" || key === "j") focusTile(verticalNeighbour(tile, 1) || all[Math.min(i + 1, all.length - 1)]);
    else if (key === "ArrowUp" || key === "k") focusTile(verticalNeighbour(tile, -1) || all[Math.max(i - 1, 0)]);
  }

  async function openFullView(url) {
    if (!lightbox) {
      window.location.href = url;
      return;
    }
    const response = await fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" });
    if (!response.ok) {
      window.location.href = url;
      return;
    }
    lightbox.querySelector("[data-lightbox-body]").innerHTML = await response.text();
    lightbox.showModal();
  }

  function press(tile, key) {
    const control = tile.querySelector(`[data-key="${key}"]`);
    if (control) control.click();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.closest && target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "?" && !typing) {
      event.preventDefault();
      if (help && !help.open) help.showModal();
      return;
    }
    if (typing || document.querySelector("dialog[open]")) return;
    const tile = currentTile();
    if (["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "h", "j", "k", "l"].includes(event.key)) {
      if (!tile && !tiles().length) return;
      event.preventDefault();
      move(event.key);
    } else if (tile && ["a", "r", "u"].includes(event.key)) {
      event.preventDefault();
      lastFocusedId = tile.id;
      press(tile, event.key);
    } else if (tile && event.key === "g") {
      event.preventDefault();
      window.location.href = tile.dataset.regenerateUrl;
    } else if (tile && event.key === "Enter" && target === tile) {
      event.preventDefault();
      openFullView(tile.dataset.fullUrl);
    }
  });

  document.addEventListener("focusin", (event) => {
    const tile = event.target.closest && event.target.closest("[data-candidate]");
    if (tile) lastFocusedId = tile.id;
  });

  // A review swaps the tile for a new one: give the new one the focus the old one had.
  function restoreFocus() {
    if (!lastFocusedId) return;
    const active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return;
    const tile = document.getElementById(lastFocusedId);
    if (tile) tile.focus({ preventScroll: true });
  }
  document.addEventListener("htmx:after:swap", () => setTimeout(restoreFocus, 0));
  document.addEventListener("htmx:after:settle", () => setTimeout(restoreFocus, 0));

  document.addEventListener("click", (event) => {
    const opener = event.target.closest("[data-candidate] a.open");
    if (opener && lightbox && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      lastFocusedId = opener.closest("[data-candidate]").id;
      openFullView(opener.href);
      return;
    }
    const helpButton = event.target.closest("[data-help-open]");
    if (helpButton && help) help.showModal();
    const copy = event.target.closest("[data-copy]");
    if (copy) copyText(copy);
  });

  async function copyText(button) {
    const text = button.dataset.copy;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    const label = button.textContent;
    button.textContent = text.length > 40 ? "Copied" : "Copied " + text;
    setTimeout(() => { button.textContent = label; }, 1500);
  }

  if (lightbox) {
    lightbox.addEventListener("close", () => {
      const tile = lastFocusedId && document.getElementById(lastFocusedId);
      if (tile) tile.focus();
    });
  }
})();
