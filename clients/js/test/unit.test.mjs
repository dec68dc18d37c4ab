// Pure behaviour of the client: replay dropping, the HLS helper, option checks. No server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CHANNEL_EVENTS, CloseCode, LiveClient, TERMINAL_CODES, hlsStreamAuth } from "../droptv-live.js";

class NoSocket {
  constructor() {
    throw new Error("not used");
  }
}
const make = () =>
  new LiveClient({ urls: "http://127.0.0.1:1", creatorId: "c", sessionId: "s", token: "t", WebSocket: NoSocket });

test("replayed channel events are dropped, per-session messages are not", () => {
  const c = make();
  assert.equal(c.accept({ type: "hello", epoch: "e1", seq: 5 }), true);
  assert.equal(c.accept({ type: "viewers", epoch: "e1", seq: 5 }), false); // in the hello already
  assert.equal(c.accept({ type: "viewers", epoch: "e1", seq: 6 }), true);
  assert.equal(c.accept({ type: "epg", epoch: "e1", seq: 6 }), false);
  assert.equal(c.accept({ type: "token", epoch: "e1", seq: 6 }), true); // carries the latest seq
  assert.equal(c.accept({ type: "stream", epoch: "e1", seq: 7 }), true);
  assert.equal(c.seq, 7);
  // A new epoch: seqs are not comparable, the position starts over.
  assert.equal(c.accept({ type: "viewers", epoch: "e2", seq: 1 }), true);
  assert.deepEqual([c.epoch, c.seq], ["e2", 1]);
  assert.equal(c.accept({ type: "hello", epoch: "e2", seq: 0 }), true); // a hello always resets
  assert.equal(c.seq, 0);
});

test("close codes mirror the protocol", () => {
  assert.deepEqual([...CHANNEL_EVENTS].sort(), ["epg", "stream", "viewers"]);
  for (const code of [1009, 4001, 4003, 4004, 4009]) assert.ok(TERMINAL_CODES.has(code), code);
  for (const code of [1006, 1011, 1012, 4008, 4029]) assert.ok(!TERMINAL_CODES.has(code), code);
  assert.equal(CloseCode.DRAINING, 1012);
});

test("the HLS helper signs every request with the latest stream token", () => {
  const c = make();
  const auth = hlsStreamAuth(c);
  const url = "https://cdn.example/streams/s1/720p/stream.m3u8";
  assert.equal(auth.signUrl(url), url); // no token yet
  c._deliver({ type: "hello", epoch: "e", seq: 1, token: { token: "tok1", token_expires_at: "x", stream_url: url, quality: "720p" } });
  assert.equal(auth.token, "tok1");
  const opened = [];
  const xhr = { open: (...a) => opened.push(a), setRequestHeader: () => assert.fail("no header by default") };
  auth.xhrSetup(xhr, "https://cdn.example/streams/s1/720p/seg1.ts?x=1");
  assert.deepEqual(opened, [["GET", "https://cdn.example/streams/s1/720p/seg1.ts?x=1&token=tok1", true]]);
  c._deliver({ type: "token", epoch: "e", seq: 1, token: "tok2", token_expires_at: "y", stream_url: url, quality: "720p", reason: "refresh" });
  const req = hlsStreamAuth(c, { header: true, param: "t" }).fetchSetup({ url }, { method: "GET" });
  assert.equal(req.url, url + "?t=tok2");
  assert.equal(req.headers.get("authorization"), "Bearer tok2");
  c._deliver({ type: "stream", epoch: "e", seq: 2, is_live: false, stream_id: null, health: null, title: null });
  assert.equal(auth.token, null);
});

test("options are checked", () => {
  assert.throws(() => new LiveClient({ urls: [], creatorId: "c", sessionId: "s", token: "t", WebSocket: NoSocket }), /URL/);
  assert.throws(() => new LiveClient({ urls: "http://x", creatorId: "c", sessionId: "s", WebSocket: NoSocket }), /token/);
});
