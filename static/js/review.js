// Keyboard culling, as photo culling tools do it: the article page's grid, the loupe (the full
// view in the lightbox, or the candidate's own page) and synced compare; copy-to-clipboard buttons.
// Plain JS, no dependencies; every action also works by mouse and without JS (forms and links).
// Keys with Shift held belong to bulk.js (multi-select), except "?".
(function () {
  "use strict";
  const tiles = () => Array.from(document.querySelectorAll("[data-candidate]"));
  const lightbox = document.getElementById("lightbox");
  const help = document.getElementById("keyboard-help");
  const switchBox = document.getElementById("auto-advance");
  const statusLine = document.getElementById("culling-status");
  const compareItems = () => Array.from(document.querySelectorAll("[data-compare-item]"));
  let lastFocusedId = null;

  const DECISION_KEYS = { p: "approve", a: "approve", x: "reject", r: "reject", u: "undo" };
  const ALLOWED_FROM = { approve: ["pending", "rejected"], reject: ["pending", "approved"], undo: ["approved", "rejected"] };
  const RESULT = { approve: "approved", reject: "rejected", undo: "pending" };
  const LABELS = { pending: "Pending", approved: "Approved", rejected: "Rejected", published: "Published", unpublished: "Unpublished" };
  const MOVE_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "h", "j", "k", "l"];
  const FORWARD = ["ArrowRight", "ArrowDown", "l", "j"];

  // ---- auto-advance: on by default, remembered per user in localStorage ("hoffdesk:auto-advance:<user id>")
  const preferenceKey = switchBox ? `hoffdesk:auto-advance:${switchBox.dataset.user}` : "";
  if (switchBox) {
    const saved = window.localStorage.getItem(preferenceKey);
    if (saved !== null) switchBox.checked = saved === "on";
    switchBox.addEventListener("change", () => {
      window.localStorage.setItem(preferenceKey, switchBox.checked ? "on" : "off");
      // back to the grid, so the next key acts on the candidate the editor was at
      const tile = lastFocusedId && document.getElementById(lastFocusedId);
      if (tile && document.activeElement === switchBox) tile.focus({ preventScroll: true });
    });
  }
  const autoAdvance = () => (switchBox ? switchBox.checked : false);

  function toggleAutoAdvance() {
    if (!switchBox) return;
    switchBox.checked = !switchBox.checked;
    switchBox.dispatchEvent(new Event("change"));
    say(`Auto-advance ${switchBox.checked ? "on" : "off"}.`);
  }

  function say(text) {
    if (statusLine) statusLine.textContent = text;
    const inLoupe = lightbox && lightbox.querySelector(".loupe-status");
    if (inLoupe) inLoupe.textContent = text;
  }

  // ---- decisions and ratings: one request at a time, in key order, so the history keeps that order
  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers:inherited") || "{}")["X-CSRFToken"] || "";
    } catch (_) {
      return "";
    }
  }

  let queue = Promise.resolve();
  let inFlight = 0;
  const optimistic = new Map(); // candidate pk -> the status its queued decisions lead to
  const queuedFor = new Map(); // candidate pk -> requests not answered yet

  function send(pk, url, data) {
    inFlight += 1;
    queuedFor.set(pk, (queuedFor.get(pk) || 0) + 1);
    queue = queue
      .then(async () => {
        let status = 0;
        let text = "";
        try {
          const response = await fetch(url, {
            method: "POST",
            body: new URLSearchParams(data),
            credentials: "same-origin",
            headers: { "HX-Request": "true", "X-CSRFToken": csrfToken() },
          });
          status = response.status;
          text = await response.text();
        } catch (error) {
          text = `Not saved: ${error}`;
        }
        const left = queuedFor.get(pk) - 1;
        if (left > 0 && status === 200) queuedFor.set(pk, left);
        else {
          queuedFor.delete(pk);
          optimistic.delete(pk);
        }
        applyAnswer(pk, status, text);
      })
      .catch(() => {})
      .finally(() => {
        inFlight -= 1;
        if (inFlight === 0) document.body.dispatchEvent(new CustomEvent("review-changed", { bubbles: true }));
      });
  }

  function parseTile(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    return template.content.querySelector("[data-candidate]");
  }

  function tileStatus(tile) {
    const found = Array.from(tile.classList).find((name) => name.startsWith("review-"));
    return found ? found.slice("review-".length) : "pending";
  }

  // What the answer says lands everywhere the candidate is shown: its tile, the loupe, compare.
  function applyAnswer(pk, status, text) {
    const fresh = status === 200 || status === 409 ? parseTile(text) : null;
    if (!fresh) {
      say(text.trim().slice(0, 300) || "Not saved: the server did not answer.");
      return;
    }
    const old = document.getElementById(`candidate-${pk}`);
    if (old) {
      const hadFocus = old.contains(document.activeElement);
      const mark = old.querySelector('input[name="c"]');
      const newMark = fresh.querySelector('input[name="c"]');
      if (mark && newMark) newMark.checked = mark.checked;
      if (old.classList.contains("selected")) fresh.classList.add("selected");
      old.replaceWith(fresh);
      if (window.htmx) window.htmx.process(fresh);
      if (hadFocus) fresh.focus({ preventScroll: true });
      if (optimistic.has(pk)) showStatus(fresh, optimistic.get(pk));
    }
    const state = optimistic.get(pk) || tileStatus(fresh);
    const stars = fresh.querySelector('[data-testid="rating"]');
    for (const holder of holdersOf(pk)) {
      showStatus(holder, state);
      const shown = holder.querySelector('[data-testid="rating"]');
      if (shown && stars) shown.replaceWith(stars.cloneNode(true));
    }
    const message = fresh.querySelector('[data-testid="review-message"]');
    if (message) say(message.textContent);
  }

  // The loupe and compare items of a candidate (they carry data-pk and data-status).
  function holdersOf(pk) {
    return Array.from(document.querySelectorAll(`[data-compare-item][data-pk="${pk}"], .full-view[data-pk="${pk}"]`));
  }

  function showStatus(element, status) {
    const label = element.querySelector('[data-testid="review-state"]');
    if (label) {
      label.textContent = LABELS[status] || status;
      label.className = `state state-${status}`;
    }
    if (element.matches("[data-candidate]")) {
      for (const name of Array.from(element.classList)) if (name.startsWith("review-")) element.classList.remove(name);
      element.classList.add(`review-${status}`);
    } else {
      element.dataset.status = status;
    }
  }

  function currentStatusOf(pk, fallback) {
    return optimistic.get(pk) || fallback;
  }

  // The rate URL sits beside the review URL: /candidates/<pk>/review/ -> /candidates/<pk>/rate/.
  const rateUrl = (reviewUrl) => reviewUrl.replace(/review\/$/, "rate/");

  // target: {pk, status, reviewUrl, reason}; returns the new status, or null when not allowed.
  function decide(target, action) {
    const from = currentStatusOf(target.pk, target.status);
    if (!target.reviewUrl || !ALLOWED_FROM[action].includes(from)) return null;
    const to = RESULT[action];
    optimistic.set(target.pk, to);
    send(target.pk, target.reviewUrl, { action, expected: from, reason: target.reason || "" });
    const tile = document.getElementById(`candidate-${target.pk}`);
    if (tile) showStatus(tile, to);
    for (const holder of holdersOf(target.pk)) showStatus(holder, to);
    return to;
  }

  function rate(target, stars) {
    if (!target.reviewUrl) return;
    send(target.pk, rateUrl(target.reviewUrl), { rating: String(stars) });
    for (const element of [document.getElementById(`candidate-${target.pk}`), ...holdersOf(target.pk)]) {
      const shown = element && element.querySelector('[data-testid="rating"]');
      if (shown) {
        shown.dataset.rating = String(stars);
        shown.textContent = "★".repeat(stars) + "☆".repeat(5 - stars);
      }
    }
  }

  function tileTarget(tile) {
    const form = tile.querySelector("form.actions[action]");
    const reason = tile.querySelector('input[name="reason"]');
    return {
      pk: tile.id.replace("candidate-", ""),
      status: tileStatus(tile),
      reviewUrl: form ? form.getAttribute("action") : "",
      reason: reason ? reason.value : "",
    };
  }

  function holderTarget(holder) {
    return { pk: holder.dataset.pk, status: holder.dataset.status, reviewUrl: holder.dataset.reviewUrl, reason: "" };
  }

  // ---- the grid
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

  // The next candidate still pending after this one: on in this run, then the next runs, then
  // from the top of the page; null when the page has none left.
  function nextUndecided(tile) {
    const all = tiles();
    const i = all.indexOf(tile);
    const order = all.slice(i + 1).concat(all.slice(0, Math.max(i, 0)));
    return order.find((other) => currentStatusOf(other.id.replace("candidate-", ""), tileStatus(other)) === "pending") || null;
  }

  function sayWhenDone() {
    const left = tiles().some((t) => currentStatusOf(t.id.replace("candidate-", ""), tileStatus(t)) === "pending");
    const doneText = statusLine ? statusLine.dataset.doneText : "";
    if (!left && doneText) say(doneText);
    else if (left && doneText && statusLine.textContent === doneText) say(""); // an undo reopened one
    return !left;
  }

  function decideTile(tile, action) {
    const to = decide(tileTarget(tile), action);
    if (!to) return;
    lastFocusedId = tile.id;
    const done = sayWhenDone();
    if (action !== "undo" && autoAdvance() && !done) focusTile(nextUndecided(tile));
  }

  function toggleMark(tile) {
    const mark = tile.querySelector('input[name="c"]');
    if (!mark) return;
    mark.checked = !mark.checked;
    tile.classList.toggle("marked", mark.checked);
  }

  function compareMarked() {
    const form = document.getElementById("compare-form");
    const marked = Array.from(document.querySelectorAll('input[name="c"]:checked'));
    if (!form) return;
    if (marked.length < 2 || marked.length > 4) {
      say(`Mark two to four candidates with Space, then press c (${marked.length} marked).`);
      return;
    }
    form.requestSubmit();
  }

  // ---- zoom frames: fit, 100% at a point, wheel, drag; frames inside [data-zoom-sync] move as one
  const views = new WeakMap();

  function groupOf(frame) {
    return frame.closest("[data-zoom-sync]") || frame.closest("dialog") || document.body;
  }

  function viewOf(frame) {
    const group = groupOf(frame);
    if (!views.has(group)) views.set(group, { scale: null, cx: 0.5, cy: 0.5 });
    return views.get(group);
  }

  function framesOf(frame) {
    return Array.from(groupOf(frame).querySelectorAll("[data-zoom-frame]"));
  }

  // The frame size shared by a group: the smallest, so synced frames get the same transform.
  function frameSize(frames) {
    const sizes = frames.map((f) => [f.clientWidth, f.clientHeight]).filter(([w, h]) => w && h);
    if (!sizes.length) return null;
    return [Math.min(...sizes.map((s) => s[0])), Math.min(...sizes.map((s) => s[1]))];
  }

  const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

  function geometry(frame, view, size) {
    const nw = Number(frame.dataset.width);
    const nh = Number(frame.dataset.height);
    const [fw, fh] = size;
    const fit = Math.min(fw / nw, fh / nh);
    const s = view.scale === null ? fit : view.scale;
    const w = nw * s;
    const h = nh * s;
    const tx = w <= fw ? (fw - w) / 2 : clamp(fw / 2 - view.cx * w, fw - w, 0);
    const ty = h <= fh ? (fh - h) / 2 : clamp(fh / 2 - view.cy * h, fh - h, 0);
    return { nw, nh, fw, fh, fit, s, w, h, tx, ty };
  }

  function render(anyFrame) {
    const frames = framesOf(anyFrame);
    const size = frameSize(frames);
    if (!size) return;
    const view = viewOf(anyFrame);
    frames.forEach((frame, i) => {
      const g = geometry(frame, view, size);
      if (!g.nw || !g.nh) return;
      if (i === 0) {
        // keep the centre where the clamp put it, so a drag past the edge does not pile up
        if (g.w > g.fw) view.cx = (g.fw / 2 - g.tx) / g.w;
        if (g.h > g.fh) view.cy = (g.fh / 2 - g.ty) / g.h;
      }
      const layer = frame.querySelector("[data-zoom-layer]");
      layer.style.width = `${g.nw}px`;
      layer.style.height = `${g.nh}px`;
      layer.style.transform = `translate(${g.tx.toFixed(1)}px, ${g.ty.toFixed(1)}px) scale(${g.s.toFixed(4)})`;
      frame.classList.add("zoom-ready");
      frame.classList.toggle("zoomed", view.scale !== null);
      if (view.scale !== null && frame.hasAttribute("data-png-on-zoom")) loadPng(frame, layer);
    });
  }

  // Toggle fit <-> 100%, keeping the image point under (px, py) (frame coordinates) in place.
  function toggleZoom(frame, px, py) {
    const view = viewOf(frame);
    const size = frameSize(framesOf(frame));
    if (!size) return;
    const g = geometry(frame, view, size);
    if (px === undefined) [px, py] = [g.fw / 2, g.fh / 2];
    if (view.scale !== null) {
      Object.assign(view, { scale: null, cx: 0.5, cy: 0.5 });
    } else {
      const u = (px - g.tx) / g.w;
      const v = (py - g.ty) / g.h;
      Object.assign(view, { scale: 1, cx: u + (g.fw / 2 - px) / g.nw, cy: v + (g.fh / 2 - py) / g.nh });
    }
    render(frame);
  }

  function zoomBy(frame, factor, px, py) {
    const view = viewOf(frame);
    const size = frameSize(framesOf(frame));
    if (!size) return;
    const g = geometry(frame, view, size);
    const next = clamp(g.s * factor, Math.min(g.fit, 1), 8);
    const u = (px - g.tx) / g.w;
    const v = (py - g.ty) / g.h;
    if (Math.abs(next - g.fit) < g.fit * 0.001) Object.assign(view, { scale: null, cx: 0.5, cy: 0.5 });
    else Object.assign(view, { scale: next, cx: u + (g.fw / 2 - px) / (g.nw * next), cy: v + (g.fh / 2 - py) / (g.nh * next) });
    render(frame);
  }

  // Compare shows WebP thumbnails; the first zoom asks for the PNG (beside the page URL:
  // /candidates/<pk>/ -> /candidates/<pk>/image.png), shown once it has arrived whole.
  function loadPng(frame, layer) {
    frame.removeAttribute("data-png-on-zoom");
    const png = document.createElement("img");
    png.alt = "";
    png.setAttribute("data-loupe-image", "");
    png.decoding = "async";
    frame.classList.add("png-pending");
    png.addEventListener("load", () => frame.classList.remove("png-pending"), { once: true });
    png.src = `${frame.dataset.pageUrl}image.png`;
    layer.appendChild(png);
  }

  // The WebP thumbnail paints first; the PNG above it shows once it has arrived whole.
  function prepareFrames(root) {
    for (const frame of root.querySelectorAll("[data-zoom-frame]")) {
      const png = frame.querySelector("[data-loupe-image]");
      if (png && !(png.complete && png.naturalWidth)) {
        frame.classList.add("png-pending");
        png.addEventListener("load", () => frame.classList.remove("png-pending"), { once: true });
      }
      render(frame);
    }
  }

  let drag = null;
  document.addEventListener("pointerdown", (event) => {
    const frame = event.target.closest && event.target.closest("[data-zoom-frame]");
    if (!frame || event.button !== 0 || event.shiftKey) return;
    event.preventDefault();
    drag = { frame, x: event.clientX, y: event.clientY, moved: false };
    const item = frame.closest("[data-compare-item]");
    if (item) item.focus({ preventScroll: true });
  });
  document.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < 4) return;
    drag.moved = true;
    const view = viewOf(drag.frame);
    const size = frameSize(framesOf(drag.frame));
    if (!size) return;
    const g = geometry(drag.frame, view, size);
    view.cx -= dx / g.w;
    view.cy -= dy / g.h;
    if (view.scale === null) view.scale = g.s; // a drag at fit pans nothing; keep it simple
    drag.x = event.clientX;
    drag.y = event.clientY;
    render(drag.frame);
  });
  document.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const { frame, moved } = drag;
    drag = null;
    if (moved) return;
    const box = frame.getBoundingClientRect();
    toggleZoom(frame, event.clientX - box.left, event.clientY - box.top);
  });
  document.addEventListener(
    "wheel",
    (event) => {
      const frame = event.target.closest && event.target.closest("[data-zoom-frame]");
      if (!frame) return;
      event.preventDefault();
      const box = frame.getBoundingClientRect();
      zoomBy(frame, Math.exp(-event.deltaY * 0.002), event.clientX - box.left, event.clientY - box.top);
    },
    { passive: false },
  );
  window.addEventListener("resize", () => {
    for (const frame of document.querySelectorAll("[data-zoom-frame]")) render(frame);
  });

  // ---- the loupe: the lightbox fills the window; next and previous keep the zoom
  let loupeTile = null;
  let loupeRequest = 0;

  function ensureLoupeBar() {
    if (!lightbox || lightbox.querySelector(".loupe-bar")) return;
    lightbox.classList.add("loupe");
    const bar = document.createElement("div");
    bar.className = "loupe-bar";
    bar.setAttribute("role", "toolbar");
    bar.setAttribute("aria-label", "Loupe");
    const buttons = [
      ["prev", "← Prev", "h"], ["next", "Next →", "l"], ["approve", "Keep", "p"], ["reject", "Reject", "x"],
      ["undo", "Undo", "u"], ["zoom", "Zoom", "z"], ["info", "Info", "i"],
    ];
    for (const [name, label, key] of buttons) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.loupeDo = name;
      button.innerHTML = `${label} <kbd>${key}</kbd>`;
      bar.appendChild(button);
    }
    const status = document.createElement("span");
    status.className = "loupe-status";
    status.setAttribute("role", "status");
    bar.appendChild(status);
    lightbox.insertBefore(bar, lightbox.querySelector("[data-lightbox-body]"));
  }

  async function showInLoupe(tile) {
    const number = ++loupeRequest;
    const url = tile.dataset.fullUrl;
    const response = await fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" });
    if (number !== loupeRequest) return; // a later next/previous won
    if (!response.ok) {
      window.location.href = url;
      return;
    }
    ensureLoupeBar();
    const body = lightbox.querySelector("[data-lightbox-body]");
    body.innerHTML = await response.text();
    loupeTile = tile;
    lastFocusedId = tile.id;
    const full = body.querySelector(".full-view");
    const frame = body.querySelector("[data-zoom-frame]");
    if (full && frame) {
      full.dataset.pk = frame.dataset.pk;
      full.dataset.status = currentStatusOf(frame.dataset.pk, frame.dataset.status);
      full.dataset.reviewUrl = frame.dataset.reviewUrl;
      showStatus(full, full.dataset.status);
    }
    if (!lightbox.open) lightbox.showModal();
    prepareFrames(body);
    focusInLoupe();
  }

  function focusInLoupe() {
    const frame = lightbox.querySelector("[data-zoom-frame]");
    if (frame) {
      frame.tabIndex = -1;
      frame.focus({ preventScroll: true });
    }
  }

  async function openFullView(url) {
    if (!lightbox) {
      window.location.href = url;
      return;
    }
    const tile = tiles().find((t) => t.dataset.fullUrl === url);
    if (tile) return showInLoupe(tile);
    const response = await fetch(url, { headers: { "HX-Request": "true" }, credentials: "same-origin" });
    if (!response.ok) {
      window.location.href = url;
      return;
    }
    lightbox.querySelector("[data-lightbox-body]").innerHTML = await response.text();
    lightbox.showModal();
    prepareFrames(lightbox);
  }

  function loupeStep(forward) {
    if (!loupeTile) return;
    const all = tiles();
    const i = all.indexOf(document.getElementById(loupeTile.id) || loupeTile);
    const next = all[forward ? i + 1 : i - 1];
    if (next) showInLoupe(next);
  }

  function loupeDecide(action) {
    const tile = loupeTile && document.getElementById(loupeTile.id);
    const full = lightbox.querySelector(".full-view[data-pk]");
    if (!full) return;
    const target = tile ? tileTarget(tile) : holderTarget(full);
    target.status = currentStatusOf(target.pk, full.dataset.status);
    const to = decide(target, action);
    if (!to || !tile) return;
    const done = sayWhenDone();
    if (action !== "undo" && autoAdvance()) {
      const next = done ? null : nextUndecided(tile);
      if (next) showInLoupe(next);
    }
  }

  function loupeAct(name) {
    const frame = lightbox.querySelector("[data-zoom-frame]");
    if (name === "prev" || name === "next") loupeStep(name === "next");
    else if (name === "zoom" && frame) toggleZoom(frame);
    else if (name === "info") lightbox.classList.toggle("show-info");
    else if (RESULT[name]) loupeDecide(name);
  }

  function loupeKey(event) {
    const key = event.key;
    const full = lightbox.querySelector(".full-view[data-pk]");
    if (MOVE_KEYS.includes(key)) loupeStep(FORWARD.includes(key));
    else if (DECISION_KEYS[key]) loupeDecide(DECISION_KEYS[key]);
    else if (/^[0-5]$/.test(key) && full) rate(holderTarget(full), Number(key));
    else if (key === "z") loupeAct("zoom");
    else if (key === "i") loupeAct("info");
    else if (key === "t") toggleAutoAdvance();
    else if (key === "g" && full) window.location.href = full.querySelector("[data-zoom-frame]").dataset.regenerateUrl;
    else return;
    event.preventDefault();
  }

  // ---- compare, and a candidate's own page: keys act on the focused (or only) image
  function pageKey(event) {
    const key = event.key;
    const items = compareItems();
    const active = document.activeElement && document.activeElement.closest("[data-compare-item]");
    const holder = active || items[0] || document.querySelector(".full-view[data-pk]");
    if (!holder) return false;
    const frame = holder.querySelector("[data-zoom-frame]");
    if (items.length && MOVE_KEYS.includes(key)) {
      const i = items.indexOf(holder);
      const next = items[clamp(i + (FORWARD.includes(key) ? 1 : -1), 0, items.length - 1)];
      next.focus();
    } else if (DECISION_KEYS[key]) decide(holderTarget(holder), DECISION_KEYS[key]);
    else if (/^[0-5]$/.test(key)) rate(holderTarget(holder), Number(key));
    else if (key === "z" && frame) toggleZoom(frame);
    else if (key === "g" && frame) window.location.href = frame.dataset.regenerateUrl;
    else if (key === "Enter" && active && frame) window.location.href = frame.dataset.pageUrl;
    else if (key === "Escape") {
      const back = document.querySelector("[data-back]");
      if (!back) return false;
      window.location.href = back.href;
    } else return false;
    event.preventDefault();
    return true;
  }

  // A candidate's own page: its frame is the holder (the lightbox marks its copy when it opens).
  const pageFull = document.querySelector("main .full-view");
  if (pageFull && !pageFull.closest("dialog")) {
    const frame = pageFull.querySelector("[data-zoom-frame]");
    if (frame) Object.assign(pageFull.dataset, { pk: frame.dataset.pk, status: frame.dataset.status, reviewUrl: frame.dataset.reviewUrl });
  }
  prepareFrames(document);
  const firstItem = compareItems()[0];
  if (firstItem) firstItem.focus({ preventScroll: true });

  // ---- one key handler for all of it
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target.closest && target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]");
    if (event.key === "?" && !typing) {
      event.preventDefault();
      if (help && !help.open) help.showModal();
      return;
    }
    if (typing || event.shiftKey) return;
    if (lightbox && lightbox.open) return loupeKey(event);
    if (document.querySelector("dialog[open]")) return;
    if (event.key === "t" && switchBox) {
      event.preventDefault();
      toggleAutoAdvance();
      return;
    }
    if (!tiles().length) {
      pageKey(event);
      return;
    }
    const tile = currentTile();
    if (MOVE_KEYS.includes(event.key)) {
      event.preventDefault();
      move(event.key);
    } else if (tile && DECISION_KEYS[event.key]) {
      event.preventDefault();
      decideTile(tile, DECISION_KEYS[event.key]);
    } else if (tile && /^[0-5]$/.test(event.key)) {
      event.preventDefault();
      rate(tileTarget(tile), Number(event.key));
    } else if (tile && event.key === " ") {
      event.preventDefault();
      toggleMark(tile);
    } else if (event.key === "c" && document.getElementById("compare-form")) {
      event.preventDefault();
      compareMarked();
    } else if (tile && event.key === "g" && tile.dataset.regenerateUrl) {
      event.preventDefault();
      window.location.href = tile.dataset.regenerateUrl;
    } else if (tile && event.key === "Enter" && target === tile) {
      event.preventDefault();
      showInLoupe(tile);
    }
  });

  document.addEventListener("focusin", (event) => {
    const tile = event.target.closest && event.target.closest("[data-candidate]");
    if (tile) lastFocusedId = tile.id;
  });

  // A review by mouse swaps the tile for a new one: give the new one the focus the old one had.
  function restoreFocus() {
    if (!lastFocusedId || (lightbox && lightbox.open)) return;
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
      showInLoupe(opener.closest("[data-candidate]"));
      return;
    }
    const loupeButton = event.target.closest("[data-loupe-do]");
    if (loupeButton) loupeAct(loupeButton.dataset.loupeDo);
    const compareButton = event.target.closest("[data-compare-do]");
    if (compareButton) {
      event.preventDefault();
      const holder = compareButton.closest("[data-compare-item]");
      decide(holderTarget(holder), compareButton.dataset.compareDo);
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
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  }

  if (lightbox) {
    lightbox.addEventListener("close", () => {
      loupeTile = null;
      const tile = lastFocusedId && document.getElementById(lastFocusedId);
      if (tile) tile.focus();
    });
  }
})();
