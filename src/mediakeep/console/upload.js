// Getting media in: files dropped (or picked) go straight to POST /v1/uploads with a
// progress bar each; provider URLs become one async ingest job whose events stream in.

import { api, jobEvents, upload } from "./api.js";
import { bytes, h, hashQuery, toast } from "./dom.js";

const NAME = "[A-Za-z0-9][A-Za-z0-9._@+=\\-]{0,127}";

function progressRow(label) {
  const bar = h("progress", { max: 100, value: 0, "aria-label": `Progress of ${label}` });
  const state = h("span", { class: "state", text: "waiting" });
  const li = h("li", { class: "transfer" }, h("span", { class: "title", text: label }), bar, state);
  let finished = false;
  return {
    li,
    progress(done, total) {
      // Progress is reported on a timer: a last report may arrive after the outcome.
      if (finished) return;
      if (total) {
        bar.value = Math.round((done / total) * 100);
        state.textContent = `${bytes(done)} of ${bytes(total)}`;
      } else {
        bar.removeAttribute("value");
        state.textContent = bytes(done);
      }
    },
    ok(assetId, text) {
      finished = true;
      li.classList.remove("failed");
      bar.value = 100;
      li.classList.add("done");
      state.replaceChildren(h("a", { href: `#/assets/${assetId}`, text }));
    },
    fail(message, final = true) {
      finished = final;
      li.classList.add("failed");
      state.textContent = message;
    },
  };
}

export async function renderUpload(ctx) {
  const preset = hashQuery();
  const collection = h("input", { id: "up-collection", name: "collection", pattern: NAME, placeholder: "default", value: preset.get("collection") || "" });
  const slot = h("input", { id: "up-slot", name: "slot", pattern: NAME, placeholder: "none" });
  const isPublic = h("input", { type: "checkbox", id: "up-public", name: "public" });
  const options = h(
    "fieldset",
    { class: "options" },
    h("legend", { text: "Where to keep it" }),
    h("label", { for: "up-collection", text: "Collection" }),
    collection,
    h("label", { for: "up-slot", text: "Slot (optional: versions)" }),
    slot,
    h("label", { class: "check" }, isPublic, " Public"),
  );
  function target() {
    for (const input of [collection, slot]) {
      if (!input.checkValidity()) {
        input.reportValidity();
        throw new Error(`${input.name}: letters, digits and ._@+=- only`);
      }
    }
    return {
      collection: collection.value.trim() || undefined,
      slot: slot.value.trim() || undefined,
      public: isPublic.checked || undefined,
    };
  }

  // -- files ------------------------------------------------------------------------------
  const fileInput = h("input", { type: "file", id: "file-input", multiple: true, class: "visually-hidden" });
  const files = h("ul", { class: "transfers", id: "uploads", "aria-live": "polite" });
  const drop = h(
    "div",
    { class: "dropzone", id: "dropzone", tabindex: 0, role: "button", "aria-describedby": "drop-hint" },
    h("strong", { text: "Drop files here" }),
    h("span", { id: "drop-hint", text: "or press Enter to choose files" }),
  );
  async function send(list) {
    let where;
    try {
      where = target();
    } catch (e) {
      toast(e.message, "error");
      return;
    }
    for (const file of list) {
      const row = progressRow(file.name);
      files.append(row.li);
      try {
        const res = await upload(file, where, (done, total) => row.progress(done, total));
        row.ok(res.id, res.status === "deduplicated" ? "already kept: open" : "stored: open");
      } catch (e) {
        row.fail(e.message);
      }
    }
  }
  drop.addEventListener("click", () => fileInput.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      fileInput.click();
    }
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send([...e.dataTransfer.files]);
  });
  fileInput.addEventListener("change", () => {
    send([...fileInput.files]);
    fileInput.value = "";
  });

  // -- URLs -------------------------------------------------------------------------------
  const urls = h("textarea", { id: "urls", name: "urls", rows: 4, placeholder: "Provider URLs, one per line", spellcheck: "false" });
  const jobs = h("ul", { class: "transfers", id: "ingests", "aria-live": "polite" });
  const jobStatus = h("p", { class: "job-status", id: "job-status", role: "status" });
  const urlForm = h(
    "form",
    {
      class: "card-form",
      onsubmit: async (e) => {
        e.preventDefault();
        const list = urls.value.split(/\s+/).filter(Boolean);
        if (!list.length) return;
        let where;
        try {
          where = target();
        } catch (err) {
          toast(err.message, "error");
          return;
        }
        const rows = list.map((u) => progressRow(u));
        jobs.append(...rows.map((r) => r.li));
        try {
          const job = await api("/v1/ingest", { method: "POST", body: { urls: list, ...where, public: !!where.public, async: true } });
          urls.value = "";
          jobStatus.textContent = `Job ${job.id.slice(0, 8)}: ${job.status}`;
          await jobEvents(
            job.id,
            (ev) => {
              const d = ev.data;
              const row = d.index === undefined ? null : rows[d.index];
              if (ev.type === "downloading" && row) row.progress(d.bytes_done, d.bytes_total);
              else if (ev.type === "stored" && row) row.ok(d.asset_id, d.status === "deduplicated" ? "already kept: open" : "stored: open");
              else if (ev.type === "failed" && row) {
                if (d.retrying) row.fail(`retrying: ${d.error?.message}`, false);
                else row.fail(d.error?.message || "failed");
              }
              else if (ev.type === "retrying" || ev.type === "waiting") jobStatus.textContent = `Job ${job.id.slice(0, 8)}: ${ev.type}`;
              else if (ev.type === "started") jobStatus.textContent = `Job ${job.id.slice(0, 8)}: running`;
              else if (ev.type === "done" || ev.type === "failed") {
                jobStatus.textContent = `Job ${job.id.slice(0, 8)}: ${d.status} (${d.stored} stored, ${d.failed} failed)`;
              }
            },
            ctx.signal,
          );
        } catch (err) {
          if (ctx.signal.aborted) return;
          for (const r of rows) if (!r.li.classList.contains("done")) r.fail(err.message);
          jobStatus.textContent = err.message;
        }
      },
    },
    h("label", { for: "urls", text: "Provider URLs" }),
    urls,
    h("button", { type: "submit", id: "ingest", text: "Keep these URLs" }),
  );

  ctx.view.replaceChildren(
    h("div", { class: "page-head" }, h("h1", { text: "Upload" })),
    options,
    h("div", { class: "two" }, h("section", {}, h("h2", { text: "Files" }), drop, fileInput, files), h("section", {}, h("h2", { text: "From URLs" }), urlForm, jobStatus, jobs)),
  );
}
