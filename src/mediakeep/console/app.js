// The console's shell: sign-in, the hash router and the header. Each page lives in its
// own module and renders into <main id="view">.

import { api, ApiError, session } from "./api.js";
import { clear, h, notice, toast } from "./dom.js";
import { renderSignIn } from "./signin.js";
import { renderCollections } from "./collections.js";
import { renderGrid } from "./grid.js";
import { renderSlot } from "./slot.js";
import { renderAsset } from "./asset.js";
import { renderUpload } from "./upload.js";
import { renderStorage } from "./storage.js";

const view = document.getElementById("view");
let current = null; // the page's AbortController: leaving a page stops its requests

const ROUTES = [
  [/^#\/?$/, "collections", () => renderCollections],
  [/^#\/all$/, "collections", () => (ctx) => renderGrid(ctx, null)],
  [/^#\/collections\/([^/]+)$/, "collections", (m) => (ctx) => renderGrid(ctx, m[1])],
  [/^#\/collections\/([^/]+)\/slots\/([^/]+)$/, "collections", (m) => (ctx) => renderSlot(ctx, m[1], m[2])],
  [/^#\/assets\/([^/]+)$/, "collections", (m) => (ctx) => renderAsset(ctx, m[1])],
  [/^#\/upload$/, "upload", () => renderUpload],
  [/^#\/storage$/, "storage", () => renderStorage],
];

function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function whoAmI(signingIn = false) {
  // The stats route answers with the acting owner: the cheapest way to check a token.
  const stats = await api("/v1/storage/stats", { keepSession: signingIn });
  session.owner = stats.owner;
  document.getElementById("owner-name").textContent = stats.owner;
  return stats.owner;
}

function signedIn(yes) {
  document.getElementById("nav").hidden = !yes;
  document.getElementById("who").hidden = !yes;
}

async function route(event) {
  if (current) current.abort();
  current = new AbortController();
  const ctx = { view, signal: current.signal, go };
  if (!session.token) {
    signedIn(false);
    clear(view);
    await renderSignIn(ctx, async () => {
      await whoAmI(true);
      signedIn(true);
      route("signed-in");
    });
    return;
  }
  if (!session.owner) {
    try {
      await whoAmI();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return; // handled by mk-signed-out
      clear(view).append(notice("error", "The service did not answer", e.message, retryButton()));
      return;
    }
  }
  signedIn(true);
  const path = (location.hash || "#/").split("?")[0];
  for (const [pattern, nav, make] of ROUTES) {
    const m = path.match(pattern);
    if (!m) continue;
    const parts = m.map((p, i) => (i === 0 ? p : decode(p)));
    markNav(nav);
    clear(view).append(h("p", { class: "loading", text: "Loading…" }));
    try {
      await make(parts)(ctx);
      // After moving to another page, keyboard and screen reader users start at its
      // content, unless the page put focus somewhere itself.
      const lost = !document.activeElement || document.activeElement === document.body;
      if (event && lost && !ctx.signal.aborted) view.focus({ preventScroll: true });
    } catch (e) {
      if (ctx.signal.aborted || e.name === "AbortError") return;
      showError(e);
    }
    return;
  }
  markNav(null);
  clear(view).append(notice("empty", "Not found", "There is no such page.", h("a", { href: "#/", text: "Back to collections" })));
}

export function showError(e) {
  if (e instanceof ApiError && e.status === 404) {
    clear(view).append(
      notice("empty", "Not found", "Nothing with that name or id belongs to you.", h("a", { href: "#/", text: "Back to collections" })),
    );
    return;
  }
  if (e instanceof ApiError && e.status === 401) return;
  clear(view).append(notice("error", "Something went wrong", e.message, retryButton()));
}

function retryButton() {
  return h("button", { type: "button", onclick: () => route(), text: "Try again" });
}

function markNav(name) {
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.nav === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function signOut(message) {
  session.token = null;
  session.owner = null;
  document.getElementById("owner-name").textContent = "";
  if (message) toast(message, "error");
  route();
}

document.getElementById("sign-out").addEventListener("click", () => signOut());
// The skip link's "#view" would otherwise be taken for a route.
document.querySelector(".skip").addEventListener("click", (e) => {
  e.preventDefault();
  view.focus();
});
window.addEventListener("mk-signed-out", (e) => signOut(`Signed out: ${e.detail.message}`));
window.addEventListener("hashchange", route);
route();
