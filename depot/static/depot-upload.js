// depot-upload.js: send one file from the browser straight to a depot storage.
//
// Dependency-free ES module shipped inside the depot Python package
// (depot.uploads.javascript_path() gives its location on disk).  The
// application creates an upload intent on the server
// (depot.uploads.create_upload_intent(...).as_dict(), sent as JSON), hands it
// to upload() together with the File the user chose, and once upload()
// resolves, tells the server the id so that it attaches the file
// (UploadedFile.from_upload(id)).
//
//     import { upload } from "/static/depot-upload.js";
//     const intent = await (await fetch("/uploads/intent", {...})).json();
//     const { id } = await upload(file, intent, {
//       onProgress: ({ loaded, total }) => bar.value = loaded / total,
//     });
//
// Methods of an intent (its "method" key):
//   POST       a form upload (S3 presigned POST): the intent's "fields" first
//              (and a Content-Type field with the file's type when they have
//              none), then the file as the last form field "file", so that
//              the service has read the policy before the bytes.
//   PUT        the raw bytes in one request with the intent's "headers" (and
//              the file's type as Content-Type when they have none): S3/GCS
//              signed PUT, the depot middleware's upload endpoint.
//   MULTIPART  the file cut in parts of "parts.part_size" bytes, part n sent
//              with PUT to "parts.urls[n - 1]" (S3 presigned UploadPart) and no
//              other header.  Each part is retried on its own; the server
//              completes the upload when the application attaches it.
//   RESUMABLE  a resumable upload session (GCS): the bytes are sent with PUT
//              to "url" in chunks of "parts.part_size", each with
//              Content-Range (no Content-Type: the session fixed it); a 308
//              answer asks for more.  After a failure the session is asked
//              how much it kept when "parts.query_status" is true, else the
//              same chunk is sent again.
//
// Failures: a request that fails on the network, or answers 408, 429 or 5xx,
// is tried again up to `retries` times (exponential backoff from 0.5 s, at most
// 8 s); any other refusal (403: expired or tampered intent, 413: too large,
// 415: wrong type...) is final.  upload() then rejects with an UploadError
// whose message names the file, the storage and the reason; an AbortSignal
// given as `signal` stops every request and rejects with the signal's reason.
//
// Progress: onProgress({loaded, total, part, parts}) follows the bytes as the
// browser sends them, across parts; `loaded` never goes backwards (the bytes
// of a part that is sent again are counted once).

const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 8000;
const METHODS = ["POST", "PUT", "MULTIPART", "RESUMABLE"];

/** An upload that did not happen; `status` is the HTTP status (0: network). */
export class UploadError extends Error {
  constructor(message, { file = null, storage = null, status = 0, part = null, body = "" } = {}) {
    super(message);
    this.name = "UploadError";
    this.file = file;
    this.storage = storage;
    this.status = status;
    this.part = part;
    this.body = body;
  }
}

function describe(file, intent) {
  const name = file && typeof file.name === "string" ? file.name : "(unnamed blob)";
  const storage = intent && intent.storage ? intent.storage : "?";
  return `upload of ${JSON.stringify(name)} to storage ${JSON.stringify(storage)}`;
}

// The reason a storage gives in its answer: S3/GCS XML <Code>/<Message>, a
// JSON {"error": ...} or {"message": ...}, or the text itself (shortened).
function reasonOf(text) {
  if (!text) return "";
  const code = /<Code>([^<]*)<\/Code>/.exec(text);
  if (code) {
    const message = /<Message>([^<]*)<\/Message>/.exec(text);
    return message ? `${code[1]}: ${message[1]}` : code[1];
  }
  try {
    const data = JSON.parse(text);
    const found = data && (data.error && (data.error.message || data.error) || data.message || data.detail);
    if (typeof found === "string") return found;
  } catch (_) {
    // not JSON: the text itself
  }
  const flat = String(text).replace(/\s+/g, " ").trim();
  return flat.length > 200 ? flat.slice(0, 200) + "..." : flat;
}

function typeAllowed(type, allowed) {
  if (!allowed || allowed.length === 0) return true;
  const base = String(type || "").split(";")[0].trim().toLowerCase();
  return allowed.some((pattern) => {
    const p = String(pattern).toLowerCase();
    return p.endsWith("/*") ? base.startsWith(p.slice(0, -1)) : base === p;
  });
}

// Refuse what cannot work before a byte is sent: the server would refuse it too.
function checkAtTheDoor(file, intent) {
  if (typeof Blob === "undefined" || !(file instanceof Blob)) {
    throw new TypeError("upload(file, intent): file must be a File or Blob");
  }
  if (!intent || typeof intent !== "object" || typeof intent.id !== "string" || !intent.id) {
    throw new TypeError(`${describe(file, intent)}: intent must be the JSON of an upload intent (no "id")`);
  }
  if (!METHODS.includes(intent.method)) {
    throw new TypeError(`${describe(file, intent)}: unknown upload method ${JSON.stringify(intent.method)}`);
  }
  if (typeof intent.url !== "string" && intent.method !== "MULTIPART") {
    throw new TypeError(`${describe(file, intent)}: the intent has no url`);
  }
  if (intent.method === "MULTIPART") {
    const parts = intent.parts;
    if (!parts || !(parts.part_size > 0) || !Array.isArray(parts.urls)) {
      throw new TypeError(`${describe(file, intent)}: a MULTIPART intent needs parts.part_size and parts.urls`);
    }
    const needed = Math.max(1, Math.ceil(file.size / parts.part_size));
    if (parts.urls.length < needed) {
      throw new UploadError(
        `${describe(file, intent)} refused before sending: ${file.size} bytes need ${needed} parts ` +
        `of ${parts.part_size} bytes, the intent signs ${parts.urls.length}`,
        { file, storage: intent.storage });
    }
  }
  if (typeof intent.max_size === "number" && file.size > intent.max_size) {
    throw new UploadError(
      `${describe(file, intent)} refused before sending: ${file.size} bytes, the intent allows at most ` +
      `${intent.max_size}`, { file, storage: intent.storage, status: 413 });
  }
  if (!typeAllowed(file.type, intent.content_types)) {
    throw new UploadError(
      `${describe(file, intent)} refused before sending: type ${JSON.stringify(file.type || "(none)")} is not ` +
      `one of ${intent.content_types.join(", ")}`, { file, storage: intent.storage, status: 415 });
  }
}

function abortReason(signal) {
  if (signal && signal.reason !== undefined) return signal.reason;
  return new DOMException("The upload was aborted.", "AbortError");
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortReason(signal));
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(abortReason(signal));
    }
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
  });
}

// One request with XMLHttpRequest (fetch has no upload progress).  Resolves
// with {status, text, headers(name)} whatever the status; rejects only for a
// network failure (status 0) or an abort.
function send(method, url, { headers = {}, body = null, onSent = null, signal = null, okStatuses = null } = {}) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) return reject(abortReason(signal));
    const xhr = new XMLHttpRequest();
    xhr.open(method, url, true);
    for (const [name, value] of Object.entries(headers || {})) xhr.setRequestHeader(name, value);
    if (onSent) {
      xhr.upload.addEventListener("progress", (event) => onSent(event.loaded));
    }
    const onAbort = () => xhr.abort();
    if (signal) signal.addEventListener("abort", onAbort, { once: true });
    const done = () => { if (signal) signal.removeEventListener("abort", onAbort); };
    xhr.onload = () => {
      done();
      resolve({
        status: xhr.status,
        text: xhr.responseText,
        header: (name) => xhr.getResponseHeader(name),
        ok: okStatuses ? okStatuses.includes(xhr.status) : xhr.status >= 200 && xhr.status < 300,
      });
    };
    xhr.onerror = () => { done(); resolve({ status: 0, text: "", header: () => null, ok: false, network: true }); };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = () => { done(); reject(abortReason(signal)); };
    xhr.send(body);
  });
}

function retryable(status) {
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

// Run attempt() until it answers ok, a final refusal, or the retries are spent.
async function withRetries(attempt, { retries, signal, fail }) {
  for (let n = 0; ; n++) {
    const answer = await attempt(n);
    if (answer.ok) return answer;
    if (!retryable(answer.status) || n >= retries) throw fail(answer, n + 1);
    const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** n) * (0.75 + Math.random() / 2);
    await sleep(delay, signal);
  }
}

function failure(file, intent, what) {
  return (answer, attempts) => {
    const reason = answer.status === 0 ? "network error" : `HTTP ${answer.status}`;
    const detail = reasonOf(answer.text);
    const tries = attempts > 1 ? ` after ${attempts} attempts` : "";
    return new UploadError(
      `${describe(file, intent)} failed${what ? " (" + what + ")" : ""}: ${reason}${detail ? " " + detail : ""}${tries}`,
      { file, storage: intent.storage, status: answer.status, body: answer.text });
  };
}

// Progress over the whole file: completed bytes plus the bytes in flight,
// reported only when they grow.
function progressMeter(total, parts, onProgress) {
  const inFlight = new Map();
  let completed = 0;
  let reported = -1;
  const report = (part) => {
    if (!onProgress) return;
    let loaded = completed;
    for (const bytes of inFlight.values()) loaded += bytes;
    loaded = Math.min(loaded, total);
    if (loaded > reported) {
      reported = loaded;
      onProgress({ loaded, total, part, parts });
    }
  };
  return {
    sent(part, bytes) { inFlight.set(part, bytes); report(part); },
    failed(part) { inFlight.delete(part); },
    finished(part, size) { inFlight.delete(part); completed += size; report(part); },
    start() { report(0); },
  };
}

function hasKey(object, name) {
  const lower = name.toLowerCase();
  return Object.keys(object).some((key) => key.toLowerCase() === lower);
}

function contentType(file) {
  return file.type || "application/octet-stream";
}

async function uploadPost(file, intent, meter, options) {
  return withRetries(() => {
    const form = new FormData();
    const fields = intent.fields || {};
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    // The policy lets the browser say the type when it does not fix it.
    if (!hasKey(fields, "Content-Type")) form.append("Content-Type", contentType(file));
    form.append("file", file, file.name || "blob");
    return send("POST", intent.url, {
      headers: intent.headers, body: form, signal: options.signal,
      // the multipart envelope adds a few bytes: progress is clamped to the file size
      onSent: (bytes) => meter.sent(1, bytes),
    }).then((answer) => { if (!answer.ok) meter.failed(1); return answer; });
  }, { retries: options.retries, signal: options.signal, fail: failure(file, intent, "") })
    .then(() => meter.finished(1, file.size));
}

async function uploadPut(file, intent, meter, options) {
  const headers = { ...intent.headers };
  if (!hasKey(headers, "Content-Type")) headers["Content-Type"] = contentType(file);
  return withRetries(() => send("PUT", intent.url, {
    headers, body: file, signal: options.signal,
    onSent: (bytes) => meter.sent(1, bytes),
  }).then((answer) => { if (!answer.ok) meter.failed(1); return answer; }),
  { retries: options.retries, signal: options.signal, fail: failure(file, intent, "") })
    .then(() => meter.finished(1, file.size));
}

async function uploadMultipart(file, intent, meter, options) {
  const size = intent.parts.part_size;
  const count = Math.max(1, Math.ceil(file.size / size));
  let next = 0;
  // A few parts at once keep the connection busy; each worker takes the next part.
  async function worker() {
    while (next < count) {
      const index = next++;
      const part = index + 1;
      const blob = file.slice(index * size, Math.min(file.size, (index + 1) * size));
      await withRetries(() => send("PUT", intent.parts.urls[index], {
        headers: intent.headers, body: blob, signal: options.signal,
        onSent: (bytes) => meter.sent(part, bytes),
      }).then((answer) => { if (!answer.ok) meter.failed(part); return answer; }),
      { retries: options.retries, signal: options.signal, fail: failure(file, intent, `part ${part} of ${count}`) });
      meter.finished(part, blob.size);
    }
  }
  const workers = [];
  for (let i = 0; i < Math.min(options.concurrency, count); i++) workers.push(worker());
  // The first failure rejects (upload() then aborts the parts in flight);
  // the other workers stop when they look for a next part.
  try {
    await Promise.all(workers);
  } catch (error) {
    next = count;
    throw error;
  }
}

// GCS resumable session: PUT chunks with Content-Range; 308 means "go on".
// The chunks carry no Content-Type (the session fixed the object's type).
async function uploadResumable(file, intent, meter, options) {
  const total = file.size;
  const parts = intent.parts || {};
  const chunk = parts.part_size > 0 ? parts.part_size : Math.max(total, 1);
  const ok = [200, 201, 308];
  const fail = failure(file, intent, "resumable session");
  // What the session kept, from the Range header of a 308 ("bytes=0-M").
  const kept = (answer, otherwise) => {
    const match = /bytes=0-(\d+)/.exec(answer.header("Range") || "");
    return match ? Number(match[1]) + 1 : otherwise;
  };
  const put = (headers, body) => send("PUT", intent.url, {
    headers: { ...intent.headers, ...headers }, body, signal: options.signal, okStatuses: ok,
    onSent: body ? (bytes) => meter.sent(1, offset + bytes) : null,
  });
  let offset = 0;
  let failures = 0;
  if (total === 0) {
    await withRetries(() => put({ "Content-Range": "bytes */0" }, null),
      { retries: options.retries, signal: options.signal, fail });
    meter.finished(1, 0);
    return;
  }
  for (;;) {
    const end = Math.min(total, offset + chunk);
    const answer = await put({ "Content-Range": `bytes ${offset}-${end - 1}/${total}` }, file.slice(offset, end));
    if (answer.ok && answer.status !== 308) break;
    if (answer.ok) {
      offset = kept(answer, end);
      failures = 0;
      continue;
    }
    meter.failed(1);
    if (!retryable(answer.status) || failures >= options.retries) throw fail(answer, failures + 1);
    await sleep(Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** failures), options.signal);
    failures++;
    // Ask the session what it kept, where it can answer without finishing the
    // object (parts.query_status); else the same chunk goes again.
    if (parts.query_status) {
      const status = await put({ "Content-Range": `bytes */${total}` }, null);
      if (status.ok && status.status !== 308) break;
      if (status.ok) offset = kept(status, 0);
    }
  }
  meter.finished(1, total);
}

const STRATEGIES = { POST: uploadPost, PUT: uploadPut, MULTIPART: uploadMultipart, RESUMABLE: uploadResumable };

/**
 * Upload `file` (a File or Blob) as the intent says.
 *
 * @param {Blob} file the bytes; File.name appears in error messages.
 * @param {object} intent an upload intent's as_dict(), as JSON.
 * @param {object} [options]
 * @param {function} [options.onProgress] called with {loaded, total, part, parts}.
 * @param {number} [options.retries=3] further attempts of a request that failed
 *   on the network or with 408/429/5xx (per part for MULTIPART).
 * @param {AbortSignal} [options.signal] aborts every request.
 * @param {number} [options.concurrency=3] parts in flight at once (MULTIPART).
 * @returns {Promise<{id: string, storage: string, size: number}>} what to send
 *   to the application so that it attaches the file.
 */
export async function upload(file, intent, { onProgress, retries = 3, signal, concurrency = 3 } = {}) {
  checkAtTheDoor(file, intent);
  if (!(Number.isInteger(retries) && retries >= 0)) throw new TypeError("retries must be an integer >= 0");
  if (!(Number.isInteger(concurrency) && concurrency >= 1)) throw new TypeError("concurrency must be an integer >= 1");
  if (signal && signal.aborted) throw abortReason(signal);
  const parts = intent.method === "MULTIPART" ? Math.max(1, Math.ceil(file.size / intent.parts.part_size)) : 1;
  const meter = progressMeter(file.size, parts, onProgress);
  // One controller for every request of this upload: the caller's signal
  // aborts it, and so does the final failure of one part (the other parts in
  // flight would be wasted).
  const controller = new AbortController();
  const forward = () => controller.abort(abortReason(signal));
  if (signal) signal.addEventListener("abort", forward, { once: true });
  meter.start();
  try {
    await STRATEGIES[intent.method](file, intent, meter, { retries, signal: controller.signal, concurrency });
  } catch (error) {
    if (!controller.signal.aborted) controller.abort(error);
    throw error;
  } finally {
    if (signal) signal.removeEventListener("abort", forward);
  }
  return { id: intent.id, storage: intent.storage, size: file.size };
}
