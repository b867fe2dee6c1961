// Sign in with a pasted token, or, for a browser on the service's own machine, mint one
// the way `mediakeep token --owner NAME` does (the service decides whether it may).

import { api, ApiError, session } from "./api.js";
import { h } from "./dom.js";

export async function renderSignIn(ctx, done) {
  const error = h("p", { class: "form-error", role: "alert", id: "signin-error" });
  const tokenInput = h("textarea", {
    id: "token",
    name: "token",
    rows: 4,
    required: true,
    spellcheck: "false",
    autocomplete: "off",
    placeholder: "eyJhbGciOiJIUzI1NiIs…",
  });

  async function use(token) {
    error.textContent = "";
    session.token = token.trim();
    try {
      await done();
    } catch (e) {
      session.token = null;
      error.textContent =
        e instanceof ApiError && e.status === 401 ? `That token was refused: ${e.message}` : e.message;
    }
  }

  const pasted = h(
    "form",
    {
      class: "card-form",
      onsubmit: (e) => {
        e.preventDefault();
        if (tokenInput.value.trim()) use(tokenInput.value);
      },
    },
    h("label", { for: "token", text: "Access token" }),
    tokenInput,
    h("p", { class: "hint" }, "A bearer token for your owner id, e.g. from ", h("code", { text: "mediakeep token --owner alice" }), "."),
    h("button", { type: "submit", id: "sign-in", text: "Sign in" }),
  );

  const page = h(
    "section",
    { class: "signin" },
    h("h1", { text: "Sign in" }),
    h("p", { class: "lead", text: "The console shows the media of the owner your token belongs to, and nothing else." }),
    pasted,
    error,
  );
  ctx.view.replaceChildren(page);
  tokenInput.focus();

  let config = { mint: false };
  try {
    config = await api("/v1/console/config", { signal: ctx.signal });
  } catch {
    // Without the config there is simply no mint button.
  }
  if (!config.mint) return;
  const owner = h("input", {
    id: "mint-owner",
    name: "owner",
    required: true,
    autocomplete: "username",
    pattern: "[A-Za-z0-9][A-Za-z0-9._@+=\\-]{0,127}",
    value: "alice",
  });
  const mint = h(
    "form",
    {
      class: "card-form mint",
      onsubmit: async (e) => {
        e.preventDefault();
        error.textContent = "";
        try {
          const minted = await api("/v1/console/token", { method: "POST", body: { owner: owner.value.trim() } });
          await use(minted.token);
        } catch (err) {
          error.textContent = err.message;
        }
      },
    },
    h("h2", { text: "On this machine" }),
    h("p", { class: "hint", text: "This browser is on the service's own machine, so the service can mint a token (valid 12 hours) for any owner." }),
    h("label", { for: "mint-owner", text: "Owner" }),
    owner,
    h("button", { type: "submit", id: "mint", text: "Mint a token and sign in" }),
  );
  page.insertBefore(mint, error);
}
