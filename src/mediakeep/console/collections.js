// The signed-in owner's collections with their counts and bytes.

import { api } from "./api.js";
import { bytes, count, h, notice } from "./dom.js";

export async function renderCollections(ctx) {
  const found = await api("/v1/collections", { signal: ctx.signal });
  const items = found.items;
  const total = items.reduce((sum, c) => sum + c.bytes, 0);
  const assets = items.reduce((sum, c) => sum + c.assets, 0);
  const head = h(
    "div",
    { class: "page-head" },
    h("h1", { text: "Collections" }),
    items.length
      ? h("p", { class: "lead", text: `${count(items.length, "collection")} · ${count(assets, "asset")} · ${bytes(total)}` })
      : null,
  );
  if (!items.length) {
    ctx.view.replaceChildren(
      head,
      notice("empty", "Nothing stored yet", "Upload files or paste provider URLs to start.", h("a", { class: "button", href: "#/upload", text: "Upload" })),
    );
    return;
  }
  const list = h(
    "ul",
    { class: "collections", id: "collections" },
    h(
      "li",
      {},
      h(
        "a",
        { class: "collection all", href: "#/all" },
        h("span", { class: "name", text: "All media" }),
        h("span", { class: "facts", text: `${count(assets, "asset")} · ${bytes(total)}` }),
      ),
    ),
    items.map((c) =>
      h(
        "li",
        {},
        h(
          "a",
          { class: "collection", href: `#/collections/${encodeURIComponent(c.collection)}`, dataset: { collection: c.collection } },
          h("span", { class: "name", text: c.collection }),
          h(
            "span",
            { class: "facts" },
            h("span", { class: "count", text: count(c.assets, "asset") }),
            " · ",
            h("span", { class: "bytes", text: bytes(c.bytes) }),
            c.slots ? ` · ${count(c.slots, "slot")}` : "",
          ),
        ),
      ),
    ),
  );
  ctx.view.replaceChildren(head, list);
}
