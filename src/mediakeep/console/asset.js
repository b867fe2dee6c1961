// One asset: a preview, its facts, prompt and provider metadata, variants, links to copy,
// visibility and delete.

import { api, ApiError } from "./api.js";
import { bytes, copyText, duration, h, toast, when, crumbs } from "./dom.js";
import { describe, placeholder } from "./grid.js";

/** The bytes themselves, from a fresh signed (or public) URL: image, video or audio. */
export async function preview(asset, signal) {
  const { url } = await api(`/v1/assets/${asset.id}/url`, { signal });
  const poster = (asset.variants?.poster || asset.variants?.small || {}).url;
  if (asset.media_kind === "image") {
    const img = h("img", { class: "preview", alt: asset.metadata?.prompt || "Preview", decoding: "async" });
    const ph = placeholder(asset);
    if (ph) img.src = ph;
    img.src = url;
    if (asset.width) {
      img.width = asset.width;
      img.height = asset.height;
    }
    return img;
  }
  if (asset.media_kind === "video") {
    return h("video", { class: "preview", controls: true, preload: "metadata", src: url, poster: poster || null });
  }
  if (asset.media_kind === "audio") {
    return h("audio", { class: "preview audio", controls: true, preload: "metadata", src: url });
  }
  return h("p", { class: "notice" }, "No preview for ", h("code", { text: asset.content_type }), ". ", h("a", { href: url, text: "Open the file" }));
}

function row(label, value, id) {
  if (value === null || value === undefined || value === "") return null;
  return [h("dt", { text: label }), h("dd", { id }, value)];
}

function copyRow(label, id, getValue) {
  const out = h("output", { id: `${id}-value`, class: "copied", for: id });
  const button = h("button", {
    type: "button",
    id,
    text: label,
    onclick: async () => {
      try {
        const value = await getValue();
        out.textContent = value;
        toast((await copyText(value)) ? "Copied" : "Select the link to copy it");
      } catch (e) {
        toast(e.message, "error");
      }
    },
  });
  return h("div", { class: "copy" }, button, out);
}

export function confirmDialog(text, okLabel = "Delete") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  const cancel = document.getElementById("confirm-cancel");
  ok.textContent = okLabel;
  return new Promise((resolve) => {
    const onOk = () => dialog.close("ok");
    const onCancel = () => dialog.close("cancel");
    ok.addEventListener("click", onOk);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener(
      "close",
      () => {
        ok.removeEventListener("click", onOk);
        cancel.removeEventListener("click", onCancel);
        resolve(dialog.returnValue === "ok");
      },
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    cancel.focus();
  });
}

export async function renderAsset(ctx, id) {
  if (!/^[0-9a-fA-F-]{36}$/.test(id)) {
    throw new ApiError(404, { code: "not_found", detail: "no such asset" });
  }
  const asset = await api(`/v1/assets/${id}`, { signal: ctx.signal });
  const variants = await api(`/v1/assets/${id}/variants`, { signal: ctx.signal }).catch(() => ({ variants: [] }));
  const stage = h("div", { class: "stage" }, await preview(asset, ctx.signal));
  const md = asset.metadata || {};
  const { prompt, ...restMeta } = md;

  const visibility = h("button", {
    type: "button",
    id: "visibility",
    role: "switch",
    "aria-checked": String(asset.public),
    class: asset.public ? "switch on" : "switch",
    text: asset.public ? "Public" : "Private",
    onclick: async () => {
      visibility.disabled = true;
      try {
        const moved = await api(`/v1/assets/${id}/visibility`, { method: "PUT", body: { public: !asset.public } });
        asset.public = moved.asset.public;
        visibility.setAttribute("aria-checked", String(asset.public));
        visibility.className = asset.public ? "switch on" : "switch";
        visibility.textContent = asset.public ? "Public" : "Private";
        document.getElementById("fact-visibility").textContent = moved.asset.visibility;
        toast(asset.public ? "Now public: anyone with the URL can see it" : "Now private");
      } catch (e) {
        toast(e.message, "error");
      } finally {
        visibility.disabled = false;
        visibility.focus();
      }
    },
  });

  const remove = h("button", {
    type: "button",
    id: "delete",
    class: "danger",
    text: "Delete…",
    onclick: async () => {
      const yes = await confirmDialog("This deletes the asset and, unless another of your assets shares them, its bytes. It cannot be undone.");
      if (!yes) {
        remove.focus();
        return;
      }
      try {
        await api(`/v1/assets/${id}`, { method: "DELETE" });
        toast("Deleted");
        const left = await api(`/v1/assets?limit=1&collection=${encodeURIComponent(asset.collection)}`);
        ctx.go(left.items.length ? `#/collections/${encodeURIComponent(asset.collection)}` : "#/");
      } catch (e) {
        toast(e.message, "error");
      }
    },
  });

  const facts = h(
    "dl",
    { class: "fact-list", id: "facts" },
    row("Type", asset.content_type, "fact-type"),
    row("Kind", asset.media_kind, "fact-kind"),
    row("Dimensions", asset.width ? `${asset.width} × ${asset.height}` : null, "fact-dimensions"),
    row("Duration", duration(asset.duration), "fact-duration"),
    row("Size", `${bytes(asset.size)} (${asset.size.toLocaleString("en")} bytes)`, "fact-size"),
    row("SHA-256", h("code", { class: "hash", text: asset.sha256 }), "fact-sha256"),
    row("Visibility", asset.visibility, "fact-visibility"),
    row("Collection", h("a", { href: `#/collections/${encodeURIComponent(asset.collection)}`, text: asset.collection }), "fact-collection"),
    row(
      "Slot",
      asset.slot
        ? h("a", { href: `#/collections/${encodeURIComponent(asset.collection)}/slots/${encodeURIComponent(asset.slot)}`, text: `${asset.slot} (v${asset.version})` })
        : null,
      "fact-slot",
    ),
    row("Provider", asset.provider, "fact-provider"),
    row("Source", asset.source_url ? h("span", { class: "url", text: asset.source_url }) : null, "fact-source"),
    row("Created", when(asset.created_at), "fact-created"),
  );

  const variantList = variants.variants.length
    ? h("div", { class: "table-wrap" }, h(
        "table",
        { class: "variants", id: "variants" },
        h("thead", {}, h("tr", {}, h("th", { text: "Variant" }), h("th", { text: "Size" }), h("th", { text: "Dimensions" }), h("th", { text: "Type" }))),
        h(
          "tbody",
          {},
          variants.variants.map((v) =>
            h(
              "tr",
              {},
              h("td", {}, v.url ? h("a", { href: v.url, text: v.name, target: "_blank", rel: "noopener" }) : v.name),
              h("td", { text: v.status === "stored" ? bytes(v.size) : `failed: ${v.error || ""}` }),
              h("td", { text: v.width ? `${v.width} × ${v.height}` : "–" }),
              h("td", { text: v.content_type || "–" }),
            ),
          ),
        ),
      ))
    : h("p", { class: "hint", text: "No variants." });

  const metaBlock = Object.keys(restMeta).length ? h("pre", { class: "json", id: "metadata", text: JSON.stringify(restMeta, null, 2) }) : h("p", { class: "hint", text: "No provider metadata." });

  ctx.view.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      crumbs(asset.collection),
      h("h1", { class: "asset-title", text: prompt ? String(prompt) : describe(asset) }),
    ),
    h(
      "div",
      { class: "detail" },
      stage,
      h(
        "aside",
        { class: "side" },
        h(
          "div",
          { class: "toolbar" },
          h("span", { class: "label", id: "visibility-label", text: "Visibility" }),
          visibility,
          remove,
        ),
        copyRow("Copy permanent link", "copy-permanent", async () => asset.content_url),
        copyRow("Copy signed URL", "copy-signed", async () => (await api(`/v1/assets/${id}/url`)).url),
        facts,
      ),
    ),
    prompt ? h("section", {}, h("h2", { text: "Prompt" }), h("p", { class: "prompt", id: "prompt", text: String(prompt) })) : null,
    h("section", {}, h("h2", { text: "Provider metadata" }), metaBlock),
    h("section", {}, h("h2", { text: "Variants" }), variantList),
    asset.media_info ? h("details", {}, h("summary", { text: "What processing learnt" }), h("pre", { class: "json", text: JSON.stringify({ ...asset.media_info, placeholder: asset.media_info.placeholder ? "(data: URL)" : undefined }, null, 2) })) : null,
  );
}
