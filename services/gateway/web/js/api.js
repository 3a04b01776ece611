// The REST API with the device token, which lives in this browser's storage (never in a URL)
// and is shared by its tabs.

const TOKEN_KEY = "hearo.token";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** fetch, the response when it is 2xx; else the API's error body as ApiError, and network
 * failures as ApiError(0, "network"). ``headers`` replace the device token (another page's
 * credential); ``auth`` false sends none. */
export async function request(method, path, body, { headers = {}, auth = true } = {}) {
  const init = { method, headers: {}, cache: "no-store" };
  if (auth && token()) init.headers.Authorization = `Bearer ${token()}`;
  Object.assign(init.headers, headers);
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "network", String(error.message || error));
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const detail = data && data.detail;
    if (Array.isArray(detail)) {
      // 422: FastAPI's list; the first problem, with the field it is about.
      const first = detail[0] || {};
      const where = (first.loc || []).filter((p) => p !== "body").join(" › ");
      throw new ApiError(response.status, "invalid", `${where}: ${first.msg}`, data);
    }
    const code = (detail && detail.code) || `http_${response.status}`;
    throw new ApiError(response.status, code, (detail && detail.message) || response.statusText, data);
  }
  return response;
}

/** ``request`` and its JSON body (null when it has none). */
export async function api(method, path, body, options = {}) {
  const response = await request(method, path, body, options);
  return response.json().catch(() => null);
}

/** A clip link made relative when it points at a gateway's /v1/clips/: the page's own origin
 * serves it, whichever host name the page was opened with. */
export function clipSource(url) {
  try {
    const parsed = new URL(url, location.href);
    if (parsed.pathname.startsWith("/v1/clips/")) return parsed.pathname + parsed.search;
    return parsed.href;
  } catch {
    return "";
  }
}
