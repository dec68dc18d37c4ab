// droptv-live: the browser (and Node) client of the droptv.live.v1 websocket protocol.
//
// One watcher's socket, kept open across instance restarts and network drops, with
// the same guarantees as the Python `droptv_live_client.LiveClient`:
// - a list of instance URLs: a refused connect or a 1012 (instance draining) moves on
//   to the next one;
// - after a reconnect the client sends `resume` {epoch, last_seq}; the server answers
//   with a fresh `hello` when anything was missed;
// - channel events (`viewers`, `epg`, `stream`) replayed with a seq already seen are
//   dropped, so each reaches the application once;
// - capped, jittered exponential back-off on 1006 (dropped), 1011, 4008 (too slow),
//   and at least `backoffMax` after 4029 (rate limited); terminal codes (1009, 4001,
//   4003, 4004, 4009) end the client with a `close` event;
// - the bearer comes from a token provider (a string, or a function returning one or a
//   Promise of one) asked before every connect, so a player can refresh it; after a 4001
//   a provider function gets one more chance with a fresh token.
// No dependencies: it needs a WHATWG WebSocket (browsers; Node 22+, or Node 20 with
// --experimental-websocket, or pass `WebSocket` from the `ws` package).

export const SUBPROTOCOL = "droptv.live.v1";

/** Close codes the server sends (mirrors protocol/errors.py CloseCode). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  ABNORMAL: 1006,
  TOO_BIG: 1009,
  INTERNAL: 1011,
  DRAINING: 1012,
  UNAUTHORIZED: 4001,
  FORBIDDEN: 4003,
  SESSION_NOT_FOUND: 4004,
  TOO_SLOW: 4008,
  SESSION_ENDED: 4009,
  RATE_LIMITED: 4029,
});

/** Closes after which reconnecting would fail the same way. */
export const TERMINAL_CODES = Object.freeze(
  new Set([
    CloseCode.TOO_BIG,
    CloseCode.UNAUTHORIZED,
    CloseCode.FORBIDDEN,
    CloseCode.SESSION_NOT_FOUND,
    CloseCode.SESSION_ENDED,
  ]),
);

/** Message types that take a channel seq: their replays after a resume are dropped. */
export const CHANNEL_EVENTS = Object.freeze(new Set(["viewers", "epg", "stream"]));

/** Every server message type (each is also an event name of LiveClient). */
export const MESSAGE_TYPES = Object.freeze(["hello", "viewers", "epg", "stream", "token", "session", "error"]);

/** The client ended for good: `code` says why (see the README's close code table). */
export class LiveClosed extends Error {
  constructor(code, reason = "") {
    super(`closed with ${code}${reason ? " " + reason : ""}`);
    this.name = "LiveClosed";
    this.code = code;
    this.reason = reason;
  }
}

function wsBase(url) {
  return url.replace(/\/+$/, "").replace(/^http:\/\//, "ws://").replace(/^https:\/\//, "wss://");
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

export class LiveClient {
  /**
   * @param {object} options see droptv-live.d.ts (LiveClientOptions)
   */
  constructor(options) {
    const { urls, creatorId, sessionId, token } = options;
    this.urls = typeof urls === "string" ? [urls] : [...(urls || [])];
    if (this.urls.length === 0) throw new TypeError("at least one instance URL is required");
    if (!creatorId || !sessionId) throw new TypeError("creatorId and sessionId are required");
    if (token === undefined) throw new TypeError("token (a string or a provider function) is required");
    this.creatorId = creatorId;
    this.sessionId = sessionId;
    this.tokenProvider = typeof token === "function" ? token : () => token;
    this.refreshable = typeof token === "function";
    this.backoffInitial = options.backoffInitial ?? 100;
    this.backoffMax = options.backoffMax ?? 5000;
    this.maxAttempts = options.maxAttempts ?? 50;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket");
    }
    this.random = options.random ?? Math.random;
    /** Channel position: epoch of the last message and the highest seq seen in it. */
    this.epoch = null;
    this.seq = 0;
    this.connects = 0;
    this.lastCloseCode = null;
    this.urlIndex = 0;
    /** The latest stream token ({token, token_expires_at, stream_url, quality}) or null. */
    this.streamToken = null;
    this.closed = false;
    this._ws = null;
    this._handlers = new Map();
    this._abort = new AbortController();
    this._running = null;
  }

  get currentUrl() {
    return this.urls[this.urlIndex % this.urls.length];
  }

  /** Subscribe to an event; returns a function that unsubscribes. */
  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  /** The next event of `type`, as a Promise. */
  once(type) {
    return new Promise((resolve) => {
      const off = this.on(type, (event) => {
        off();
        resolve(event);
      });
    });
  }

  _emit(type, event) {
    for (const handler of [...(this._handlers.get(type) || [])]) {
      try {
        handler(event);
      } catch (err) {
        // A failing handler must not break delivery to the others or the socket loop.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  /**
   * Connect and keep the socket until a terminal close or `close()`.
   * Resolves when the client has ended: with the LiveClosed that ended it, or null after
   * close() or a normal (1000) close by the server. Never rejects.
   */
  start() {
    if (!this._running) this._running = this._run();
    return this._running;
  }

  /** Close the socket and stop reconnecting. */
  close() {
    this.closed = true;
    this._abort.abort();
    if (this._ws && this._ws.readyState <= 1) this._ws.close(1000, "client closed");
  }

  /** Send one client message ({type: "quality" | "resume" | "playback", ...}). */
  send(message) {
    if (!this._ws || this._ws.readyState !== 1) throw new Error("not connected");
    this._ws.send(JSON.stringify(message));
  }

  setQuality(quality) {
    this.send({ type: "quality", quality });
  }

  sendPlayback(state, extra = {}) {
    this.send({ type: "playback", state, ...extra });
  }

  /**
   * Track epoch/seq; false for a channel event already seen (a replay after resume).
   * A `hello` or a new epoch resets the position to the message's.
   */
  accept(msg) {
    const { type, epoch, seq } = msg;
    if (!Number.isInteger(seq)) return true;
    if (type === "hello" || epoch !== this.epoch) {
      this.epoch = String(epoch);
      this.seq = seq;
      return true;
    }
    if (CHANNEL_EVENTS.has(type)) {
      if (seq <= this.seq) return false;
      this.seq = seq;
    }
    return true;
  }

  _deliver(msg) {
    if (!this.accept(msg)) return;
    if (msg.type === "hello") this.streamToken = msg.token ?? null;
    else if (msg.type === "token") {
      const { token, token_expires_at, stream_url, quality } = msg;
      this.streamToken = { token, token_expires_at, stream_url, quality };
    } else if (msg.type === "stream" && !msg.is_live) this.streamToken = null;
    this._emit("message", msg);
    this._emit(msg.type, msg);
  }

  async _url() {
    const bearer = await this.tokenProvider();
    const query = new URLSearchParams({ session_id: this.sessionId, access_token: bearer });
    return `${wsBase(this.currentUrl)}/creators/${encodeURIComponent(this.creatorId)}/channel/live/ws?${query}`;
  }

  /** One socket from open to close; resolves with {opened, code, reason}. */
  _connectOnce(url) {
    return new Promise((resolve) => {
      let opened = false;
      let ws;
      try {
        ws = new this.WebSocket(url, [SUBPROTOCOL]);
      } catch (err) {
        resolve({ opened, code: CloseCode.ABNORMAL, reason: String(err) });
        return;
      }
      this._ws = ws;
      ws.onopen = () => {
        opened = true;
        this.connects += 1;
        if (this.epoch !== null) {
          ws.send(JSON.stringify({ type: "resume", epoch: this.epoch, last_seq: this.seq }));
        }
        this._emit("open", { url: this.currentUrl, connects: this.connects, resumed: this.epoch !== null });
      };
      ws.onmessage = (event) => {
        if (typeof event.data !== "string") return;
        let msg;
        try {
          msg = JSON.parse(event.data);
        } catch {
          return; // not ours to repair: the server sends JSON text only
        }
        if (msg && typeof msg === "object" && typeof msg.type === "string") this._deliver(msg);
      };
      ws.onerror = () => {}; // the close event that always follows carries the code
      ws.onclose = (event) => {
        this._ws = null;
        resolve({ opened, code: event.code || CloseCode.ABNORMAL, reason: event.reason || "" });
      };
    });
  }

  async _run() {
    const signal = this._abort.signal;
    let delay = this.backoffInitial;
    let failures = 0;
    let retriedAuth = false;
    while (!this.closed) {
      let result;
      try {
        result = await this._connectOnce(await this._url());
      } catch (err) {
        // The token provider failed: treat like a failed connect and back off.
        result = { opened: false, code: CloseCode.ABNORMAL, reason: String(err) };
      }
      const { opened, code, reason } = result;
      this.lastCloseCode = code;
      if (this.closed) break;
      if (opened) {
        failures = 0;
        delay = this.backoffInitial;
      }
      if (code === CloseCode.NORMAL) return this._end(null);
      if (code === CloseCode.UNAUTHORIZED && this.refreshable && !retriedAuth) {
        retriedAuth = true; // one more try with a fresh bearer from the provider
      } else if (TERMINAL_CODES.has(code)) {
        return this._end(new LiveClosed(code, reason));
      } else if (opened) {
        retriedAuth = false;
      }
      if (!opened && ++failures >= this.maxAttempts) {
        return this._end(new LiveClosed(code, `could not connect to any of ${this.urls.join(", ")}`));
      }
      // A draining instance or a refused connect: try the next URL first.
      if (code === CloseCode.DRAINING || !opened) this.urlIndex += 1;
      let wait = code === CloseCode.DRAINING && opened ? 0 : delay * (0.5 + this.random() / 2);
      if (code === CloseCode.RATE_LIMITED) wait = this.backoffMax * (0.5 + this.random() / 2);
      this._emit("reconnect", { code, reason, delay: wait, url: this.currentUrl });
      await sleep(wait, signal);
      delay = Math.min(this.backoffMax, delay * 2);
    }
    return this._end(null);
  }

  _end(error) {
    this.closed = true;
    this._emit("close", { code: error ? error.code : this.lastCloseCode ?? CloseCode.NORMAL, error });
    return error;
  }

  /** Async iteration over accepted server messages, until the client ends. */
  async *[Symbol.asyncIterator]() {
    const queue = [];
    let wake = null;
    let done = false;
    const offMessage = this.on("message", (msg) => {
      queue.push(msg);
      wake?.();
    });
    const offClose = this.on("close", () => {
      done = true;
      wake?.();
    });
    this.start();
    try {
      while (true) {
        if (queue.length) {
          yield queue.shift();
          continue;
        }
        if (done || this.closed) return;
        await new Promise((resolve) => (wake = resolve));
        wake = null;
      }
    } finally {
      offMessage();
      offClose();
    }
  }
}

/**
 * Keep an HLS player's requests signed with the session's latest stream token.
 *
 * For hls.js: `new Hls({ xhrSetup: auth.xhrSetup })` (or `fetchSetup: auth.fetchSetup` with
 * the fetch loader). Every playlist and segment request then carries the token the server
 * pushed last (`hello`, then each `token` refresh), as the `param` query parameter
 * (default "token"), and as `Authorization: Bearer` when `header` is true.
 * `signUrl(url)` gives the same for a plain <video src> or another player.
 */
export function hlsStreamAuth(client, { param = "token", header = false } = {}) {
  const current = () => client.streamToken?.token ?? null;
  const signUrl = (url) => {
    const token = current();
    if (!token) return url;
    const u = new URL(url, globalThis.location?.href ?? undefined);
    u.searchParams.set(param, token);
    return u.toString();
  };
  return {
    get token() {
      return current();
    },
    signUrl,
    xhrSetup(xhr, url) {
      xhr.open("GET", signUrl(url), true);
      const token = current();
      if (header && token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    },
    fetchSetup(context, initParams) {
      const headers = new Headers(initParams?.headers || {});
      const token = current();
      if (header && token) headers.set("Authorization", `Bearer ${token}`);
      return new Request(signUrl(context.url), { ...initParams, headers });
    },
  };
}

export default LiveClient;
