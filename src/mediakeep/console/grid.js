// A collection's (or all) media as a grid of thumbnails: filter by kind and date, more
// pages as you scroll (the cursor API), thumbnails loaded when they come into view with
// the stored placeholder shown until then.

import { api, query } from "./api.js";
import { bytes, clear, count, duration, h, hashQuery, kindIcon, notice, when, crumbs } from "./dom.js";

const PAGE = 48;
const KINDS = ["image", "video", "audio", "other"];

export function thumbUrl(asset) {
  const v = asset.variants || {};
  return (v.thumb || v.small || v.poster || {}).url || null;
}

export function placeholder(asset) {
  const p = asset.media_info && asset.media_info.placeholder;
  return typeof p === "string" && p.startsWith("data:image/") ? p : null;
}

/** An <img> that shows the placeholder, then the real thumbnail once near the viewport. */
export function lazyThumb(asset, observer, alt = "") {
  const src = thumbUrl(asset);
  const ph = placeholder(asset);
  if (!src && !ph) {
    return h("span", { class: `thumb-icon kind-${asset.media_kind}`, "aria-hidden": "true", text: kindIcon(asset.media_kind) });
  }
  const img = h("img", { alt, decoding: "async", class: ph ? "thumb blur" : "thumb", width: 256, height: 256 });
  if (ph) img.src = ph;
  if (src) {
    img.dataset.src = src;
    img.addEventListener("load", () => {
      if (img.src === src) img.classList.remove("blur");
    });
    if (observer) observer.observe(img);
    else img.src = src;
  }
  return img;
}

export function thumbObserver() {
  return new IntersectionObserver(
    (entries, obs) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        obs.unobserve(e.target);
        e.target.src = e.target.dataset.src;
      }
    },
    { rootMargin: "300px" },
  );
}

/** A name people recognise: the prompt, the slot and version, or where it came from. */
export function describe(asset) {
  if (typeof asset.metadata?.prompt === "string" && asset.metadata.prompt) return asset.metadata.prompt;
  if (asset.slot) return `${asset.slot} v${asset.version}`;
  const source = asset.source_url && asset.source_url.split("?")[0].split("/").pop();
  if (source) {
    try {
      return decodeURIComponent(source);
    } catch {
      return source;
    }
  }
  return `${asset.media_kind} · ${when(asset.created_at)}`;
}

function card(asset, observer) {
  const label = describe(asset);
  return h(
    "li",
    {},
    h(
      "a",
      {
        class: "tile",
        href: `#/assets/${asset.id}`,
        dataset: { id: asset.id, kind: asset.media_kind },
        "aria-label": `${asset.media_kind}: ${label}, ${bytes(asset.size)}`,
      },
      h("span", { class: "frame" }, lazyThumb(asset, observer), asset.media_kind === "video" ? h("span", { class: "badge play", text: "▶" }) : null),
      h(
        "span",
        { class: "caption" },
        h("span", { class: "title", text: label }),
        h(
          "span",
          { class: "meta" },
          asset.width ? `${asset.width}×${asset.height} · ` : "",
          asset.duration ? `${duration(asset.duration)} · ` : "",
          bytes(asset.size),
          asset.public ? h("span", { class: "pill", text: "public" }) : null,
        ),
      ),
    ),
  );
}

function isoDay(value, plusDays = 0) {
  if (!value) return undefined;
  const d = new Date(`${value}T00:00:00Z`);
  if (Number.isNaN(d.getTime())) return undefined;
  d.setUTCDate(d.getUTCDate() + plusDays);
  return d.toISOString().replace(".000Z", "Z");
}

/** Arrow keys move between tiles, row by row as laid out. */
function arrowKeys(list) {
  list.addEventListener("keydown", (e) => {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"].includes(e.key)) return;
    const tiles = [...list.querySelectorAll("a.tile")];
    const i = tiles.indexOf(document.activeElement);
    if (i < 0) return;
    const top = tiles[0].offsetTop;
    const perRow = Math.max(1, tiles.filter((t) => t.offsetTop === top).length);
    const next = {
      ArrowLeft: i - 1,
      ArrowRight: i + 1,
      ArrowUp: i - perRow,
      ArrowDown: i + perRow,
      Home: 0,
      End: tiles.length - 1,
    }[e.key];
    if (next >= 0 && next < tiles.length) {
      e.preventDefault();
      tiles[next].focus();
    }
  });
}

export async function renderGrid(ctx, collection) {
  const params = hashQuery();
  const filters = { kind: params.get("kind") || "", from: params.get("from") || "", to: params.get("to") || "" };
  const base = collection ? `#/collections/${encodeURIComponent(collection)}` : "#/all";

  let slots = [];
  if (collection) {
    // A collection with nothing in it (or someone else's) is a 404: shown as "not found".
    slots = (await api(`/v1/collections/${encodeURIComponent(collection)}/slots`, { signal: ctx.signal })).items;
  }

  const kind = h(
    "select",
    { id: "filter-kind", name: "kind" },
    h("option", { value: "", text: "All kinds" }),
    KINDS.map((k) => h("option", { value: k, text: k, selected: filters.kind === k })),
  );
  const from = h("input", { type: "date", id: "filter-from", name: "from", value: filters.from });
  const to = h("input", { type: "date", id: "filter-to", name: "to", value: filters.to });
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter media" },
    h("label", {}, "Kind ", kind),
    h("label", {}, "From ", from),
    h("label", {}, "To ", to),
    h("button", { type: "reset", class: "quiet", text: "Clear" }),
  );
  const status = h("p", { class: "grid-status", id: "grid-status", role: "status" });
  const list = h("ul", { class: "grid", id: "grid", "aria-label": "Media" });
  const more = h("button", { type: "button", class: "quiet more", id: "load-more", hidden: true, text: "Load more" });
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  arrowKeys(list);

  const head = h(
    "div",
    { class: "page-head" },
    crumbs(),
    h("h1", { text: collection || "All media" }),
  );
  const slotStrip = slots.length
    ? h(
        "section",
        { class: "slots", "aria-labelledby": "slots-title" },
        h("h2", { id: "slots-title", text: `Slots (${slots.length})` }),
        h(
          "ul",
          { class: "strip" },
          slots.map((s) =>
            h(
              "li",
              {},
              h(
                "a",
                { class: "slot-link", href: `${base}/slots/${encodeURIComponent(s.slot)}`, dataset: { slot: s.slot } },
                s.current ? lazyThumb(s.current, null) : null,
                h("span", { class: "title", text: s.slot }),
                h("span", { class: "meta", text: `v${s.current_version} of ${s.latest_version}` }),
              ),
            ),
          ),
        ),
      )
    : null;
  ctx.view.replaceChildren(head, slotStrip || "", form, status, list, more, sentinel);

  const observer = thumbObserver();
  let cursor = null;
  let loading = false;
  let shown = 0;
  let generation = 0;

  async function load(reset) {
    if (loading && !reset) return;
    const mine = reset ? ++generation : generation;
    loading = true;
    if (reset) {
      cursor = null;
      shown = 0;
      clear(list);
    }
    status.textContent = "Loading…";
    try {
      const page = await api(
        `/v1/assets${query({
          collection: collection || undefined,
          kind: filters.kind || undefined,
          created_after: isoDay(filters.from),
          created_before: isoDay(filters.to, 1),
          limit: PAGE,
          cursor: cursor || undefined,
        })}`,
        { signal: ctx.signal },
      );
      if (mine !== generation) return;
      await signOriginals(page.items, ctx.signal);
      list.append(...page.items.map((a) => card(a, observer)));
      shown += page.items.length;
      cursor = page.next_cursor;
      more.hidden = !cursor;
      const filtered = filters.kind || filters.from || filters.to;
      if (!shown) {
        status.replaceChildren(
          notice("empty", filtered ? "Nothing matches these filters" : "No media here yet", filtered ? "Try another kind or dates." : "Upload something to this collection."),
        );
      } else {
        status.textContent = `${count(shown, "item")}${cursor ? " so far" : ""}`;
      }
    } catch (e) {
      if (ctx.signal.aborted) return;
      status.replaceChildren(notice("error", "Could not load media", e.message));
    } finally {
      if (mine === generation) loading = false;
    }
    // A tall screen may show the sentinel before any scrolling: keep filling it.
    if (cursor && isVisible(sentinel)) load(false);
  }

  function changed() {
    filters.kind = kind.value;
    filters.from = from.value;
    filters.to = to.value;
    const q = query({ kind: filters.kind, from: filters.from, to: filters.to });
    history.replaceState(null, "", `${base}${q}`);
    load(true);
  }
  for (const input of [kind, from, to]) input.addEventListener("change", changed);
  form.addEventListener("submit", (e) => e.preventDefault());
  form.addEventListener("reset", () => setTimeout(changed));
  more.addEventListener("click", () => load(false));
  const scroller = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor && !loading) load(false);
  });
  scroller.observe(sentinel);
  ctx.signal.addEventListener("abort", () => {
    scroller.disconnect();
    observer.disconnect();
  });
  await load(true);
}

function isVisible(el) {
  const r = el.getBoundingClientRect();
  return r.top < window.innerHeight + 300;
}

/** Images stored without variants (too small to need one) are shown from a signed URL of
 * the original: one batch call per page. */
async function signOriginals(items, signal) {
  const ids = items.filter((a) => !thumbUrl(a) && a.media_kind === "image").map((a) => a.id);
  if (!ids.length) return;
  try {
    const signed = await api("/v1/signed-urls", { method: "POST", body: { ids }, signal });
    const byId = new Map(signed.items.filter((i) => i.url).map((i) => [i.id, i.url]));
    for (const a of items) if (byId.has(a.id)) a.variants = { ...a.variants, thumb: { url: byId.get(a.id) } };
  } catch {
    // Placeholders and icons stand in.
  }
}
