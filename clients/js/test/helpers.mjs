// Test helpers: a real droptv-live server started by tests/test_web_client_js.py (which passes
// DROPTV_TEST_URLS, DROPTV_TEST_SECRET and DROPTV_TEST_PIDS), bearer tokens minted with the
// server's secret, and plain REST calls. Run without those variables, the tests that need a
// server skip themselves.
import { createHmac } from "node:crypto";

export const URLS = (process.env.DROPTV_TEST_URLS || "").split(",").filter(Boolean);
export const SECRET = process.env.DROPTV_TEST_SECRET || "";
export const PIDS = (process.env.DROPTV_TEST_PIDS || "").split(",").filter(Boolean).map(Number);
export const SKIP = URLS.length && SECRET ? false : "no server: run through tests/test_web_client_js.py";
export const CREATOR = "creator_001";
export const CHANNEL = "ch_101";

const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");

/** An HS256 bearer JWT, as `droptv-live token --user USER [--admin]` mints it. */
export function bearer(user, { admin = false, ttl = 3600, secret = SECRET } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, iat: now, exp: now + ttl, ...(admin ? { role: "admin" } : {}) };
  const head = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${head}.${createHmac("sha256", secret).update(head).digest("base64url")}`;
}

export async function rest(method, path, { user = "user_123", admin = false, body, base = URLS[0] } = {}) {
  const resp = await fetch(base + path, {
    method,
    headers: {
      Authorization: `Bearer ${bearer(user, { admin })}`,
      ...(body ? { "Content-Type": "application/json" } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await resp.json();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
  return json.data;
}

/** POST watch (endpoint 33): a new session id for `user` on ch_101. */
export async function startWatch(user = "user_123", base = URLS[0]) {
  const data = await rest("POST", `/creators/${CREATOR}/channel/live/watch`, {
    user,
    base,
    body: { channel_id: CHANNEL, device_type: "web", quality: "auto", timezone: "UTC" },
  });
  return data.session.session_id;
}

/** The next event of `type` on `client`, or reject after `ms`. */
export function next(client, type, ms = 10000) {
  let timer;
  return Promise.race([
    client.once(type).finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no ${type} within ${ms} ms`)), ms);
    }),
  ]);
}

/** The first event of `type` on `client` for which `pred` holds, or reject after `ms`. */
export function until(client, type, pred, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching ${type} within ${ms} ms`));
    }, ms);
    const off = client.on(type, (event) => {
      if (!pred(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}
