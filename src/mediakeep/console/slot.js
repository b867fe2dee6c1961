// A versioned slot: the current version large, the history as a strip, and one click to
// make any other version current (roll back or forward).

import { api, ApiError } from "./api.js";
import { bytes, h, toast, when, crumbs } from "./dom.js";
import { lazyThumb } from "./grid.js";
import { preview } from "./asset.js";

export async function renderSlot(ctx, collection, slot) {
  const base = `/v1/collections/${encodeURIComponent(collection)}/slots/${encodeURIComponent(slot)}`;
  const history = await api(`${base}/versions`, { signal: ctx.signal });
  const current = history.items.find((a) => a.version === history.current_version) || history.items[0];
  if (!current) {
    throw new ApiError(404, { code: "not_found", detail: "the slot has no versions" });
  }
  const stage = h("div", { class: "stage" }, await preview(current, ctx.signal));
  const strip = h(
    "ol",
    { class: "strip versions", id: "versions", "aria-label": "Versions, newest first" },
    history.items.map((a) => {
      const isCurrent = a.version === history.current_version;
      return h(
        "li",
        { class: isCurrent ? "version current" : "version", dataset: { version: a.version } },
        h("a", { href: `#/assets/${a.id}`, class: "version-thumb", "aria-label": `Version ${a.version} details` }, lazyThumb(a, null)),
        h("span", { class: "title", text: `v${a.version}` }),
        h("span", { class: "meta", text: when(a.created_at) }),
        isCurrent
          ? h("span", { class: "pill current-pill", text: "current" })
          : h("button", {
              type: "button",
              class: "make-current",
              "aria-label": `Make version ${a.version} current`,
              text: "Make current",
              onclick: async (e) => {
                e.currentTarget.disabled = true;
                try {
                  await api(`${base}/current`, { method: "POST", body: { version: a.version } });
                  toast(`Version ${a.version} is now current`);
                  await renderSlot(ctx, collection, slot);
                  ctx.view.querySelector(`[data-version="${a.version}"] .current-pill`)?.focus();
                } catch (err) {
                  toast(err.message, "error");
                  e.currentTarget.disabled = false;
                }
              },
            }),
      );
    }),
  );
  ctx.view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      crumbs(collection),
      h("h1", { text: slot }),
      h(
        "p",
        { class: "lead", id: "slot-current" },
        `Current: version ${history.current_version} of ${history.items.length} · ${bytes(current.size)} · `,
        h("a", { href: `#/assets/${current.id}`, text: "details" }),
      ),
    ),
    stage,
    h("h2", { text: "History" }),
    strip,
  );
}
