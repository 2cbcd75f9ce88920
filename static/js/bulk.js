// Survey and bulk on the article page: select many tiles (shift-click, Shift+arrows,
// "Select all undecided"), then approve, reject or rate them in one request (gallery.views_bulk).
// The request carries the state the editor saw of each ("12:pending"), so a candidate another
// editor changed meanwhile is skipped and named by the server. Plain JS, no dependencies.
(function () {
  "use strict";
  const form = document.querySelector("[data-bulk-form]");
  if (!form) return;
  const counter = form.querySelector("[data-bulk-count]");
  const tiles = () => Array.from(document.querySelectorAll("[data-candidate]"));
  const selected = new Set();
  let anchorId = null;

  function stateOf(tile) {
    const match = Array.from(tile.classList).find((name) => name.startsWith("review-"));
    return match ? match.slice("review-".length) : "pending";
  }

  function render() {
    // A tile swapped by a single decision is a new element: mark it again, drop what is gone.
    for (const id of Array.from(selected)) if (!document.getElementById(id)) selected.delete(id);
    for (const tile of tiles()) {
      const on = selected.has(tile.id);
      tile.classList.toggle("selected", on);
      tile.setAttribute("aria-selected", on ? "true" : "false");
    }
    counter.textContent = selected.size + " selected";
  }

  function setSelected(tile, on) {
    if (on) selected.add(tile.id);
    else selected.delete(tile.id);
  }

  function selectRange(from, to) {
    const all = tiles();
    const [i, j] = [all.indexOf(from), all.indexOf(to)].sort((x, y) => x - y);
    if (i < 0) return setSelected(to, true);
    all.slice(i, j + 1).forEach((tile) => setSelected(tile, true));
  }

  // Shift-click: the first selects (or unselects) one tile, the next selects the range from it.
  window.addEventListener("click", (event) => {
    if (!event.shiftKey) return;
    const tile = event.target.closest && event.target.closest("[data-candidate]");
    if (!tile || event.target.closest("form, button, input, label")) return;
    event.preventDefault();
    event.stopPropagation();
    const anchor = anchorId && document.getElementById(anchorId);
    if (anchor && anchor !== tile && selected.has(anchorId)) selectRange(anchor, tile);
    else setSelected(tile, !selected.has(tile.id));
    anchorId = tile.id;
    tile.focus();
    render();
  }, true);

  function neighbour(tile, key) {
    const all = tiles();
    const i = all.indexOf(tile);
    if (key === "ArrowLeft") return all[i - 1];
    if (key === "ArrowRight") return all[i + 1];
    const box = tile.getBoundingClientRect();
    const centre = box.left + box.width / 2;
    let best = null;
    let bestScore = Infinity;
    for (const other of all) {
      const b = other.getBoundingClientRect();
      const dy = key === "ArrowDown" ? b.top - box.bottom : box.top - b.bottom;
      const score = Math.max(dy, 0) * 10 + Math.abs(b.left + b.width / 2 - centre);
      if (other !== tile && dy >= -1 && score < bestScore) {
        best = other;
        bestScore = score;
      }
    }
    return best || all[key === "ArrowDown" ? i + 1 : i - 1];
  }

  // Shift+arrows extend the selection to the next tile and move the focus there.
  window.addEventListener("keydown", (event) => {
    if (!event.shiftKey || !["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(event.key)) return;
    const tile = document.activeElement && document.activeElement.closest("[data-candidate]");
    if (!tile || document.querySelector("dialog[open]")) return;
    event.preventDefault();
    event.stopPropagation();
    setSelected(tile, true);
    const next = neighbour(tile, event.key);
    if (next) {
      setSelected(next, true);
      next.focus();
      next.scrollIntoView({ block: "nearest" });
      anchorId = anchorId || tile.id;
    }
    render();
  }, true);

  form.querySelector("[data-bulk-select-undecided]").addEventListener("click", () => {
    tiles().forEach((tile) => setSelected(tile, stateOf(tile) === "pending"));
    render();
  });
  form.querySelector("[data-bulk-clear]").addEventListener("click", () => {
    selected.clear();
    anchorId = null;
    render();
  });

  form.addEventListener("submit", (event) => {
    render();
    form.querySelectorAll("input[name=c]").forEach((input) => input.remove());
    if (!selected.size) {
      event.preventDefault();
      counter.textContent = "Select candidates first (shift-click, or Select all undecided)";
      return;
    }
    const action = event.submitter ? event.submitter.value : "";
    const verb = { approve: "Approve", reject: "Reject", rate: "Rate" }[action] || "Decide on";
    const n = selected.size;
    if (!window.confirm(verb + " " + n + " selected candidate" + (n === 1 ? "" : "s") + "?")) {
      event.preventDefault();
      return;
    }
    for (const id of selected) {
      const tile = document.getElementById(id);
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = "c";
      input.value = id.replace("candidate-", "") + ":" + stateOf(tile);
      form.appendChild(input);
    }
  });

  // "Reject all not kept" and other forms that say how many they touch ask first.
  document.addEventListener("submit", (event) => {
    const confirmText = event.target.dataset && event.target.dataset.confirm;
    if (confirmText && !window.confirm(confirmText)) event.preventDefault();
  });

  document.addEventListener("htmx:after:swap", () => setTimeout(render, 0));
  render();
})();
