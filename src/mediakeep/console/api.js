// The console's only way to the service: the ordinary owner-scoped /v1 API with the
// signed-in owner's bearer token. The token lives in sessionStorage, so it ends with the tab.

const TOKEN_KEY = "mediakeep.console.token";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "http_error";
  }
}

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  },
  owner: null,
};

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  if (session.token) headers.set("Authorization", `Bearer ${session.token}`);
  return headers;
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText };
  }
}

/** JSON in, JSON out; a problem+json answer becomes an ApiError. */
export async function api(path, { method = "GET", body, signal, keepSession = false } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  const init = { method, headers, signal, credentials: "omit" };
  if (body !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = new ApiError(response.status, await problemOf(response));
    // An expired or revoked token ends the session, except while signing in.
    if (response.status === 401 && !keepSession) window.dispatchEvent(new CustomEvent("mk-signed-out", { detail: error }));
    throw error;
  }
  if (response.status === 204) return null;
  return response.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** A direct upload with progress: fetch() cannot report upload progress, XHR can. */
export function upload(file, params, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/uploads${query(params)}`);
    xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.addEventListener("load", () => {
      const body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, { detail: "the upload was cut off" })));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/**
 * A job's Server-Sent Events. EventSource cannot send an Authorization header and the
 * route takes the bearer token like every other, so the stream is read with fetch().
 * Reconnects with Last-Event-ID until the job's final event.
 */
export async function jobEvents(jobId, onEvent, signal) {
  let lastId = null;
  for (let attempt = 0; attempt < 20 && !signal?.aborted; attempt++) {
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (lastId) headers.set("Last-Event-ID", lastId);
    let response;
    try {
      response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events`, { headers, signal });
    } catch (e) {
      if (signal?.aborted) return;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = parseFrame(frame);
        if (!event) continue;
        if (event.id) lastId = event.id;
        onEvent(event);
        if ((event.type === "done" || event.type === "failed") && event.data.index === undefined) {
          return;
        }
      }
    }
  }
}

function parseFrame(frame) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of frame.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") type = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return null;
  try {
    return { type, id, data: JSON.parse(data.join("\n")) };
  } catch {
    return null;
  }
}
