// The client against real servers (two instances on one PostgreSQL): hello, pushed viewers,
// quality, terminal closes, token provider refresh on 4001, and a drain (1012) that moves the
// client to the other instance, which answers its resume. Started by tests/test_web_client_js.py.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";
import { LiveClient, LiveClosed } from "../droptv-live.js";
import { CREATOR, PIDS, SKIP, URLS, bearer, next, rest, startWatch, until } from "./helpers.mjs";

// Every client a test makes is closed after it, pass or fail: a client left reconnecting
// would keep node running.
const made = [];
const client = (sessionId, token) => {
  const live = new LiveClient({ urls: URLS, creatorId: CREATOR, sessionId, token, backoffInitial: 50, backoffMax: 500 });
  made.push(live);
  return live;
};
afterEach(() => {
  for (const live of made.splice(0)) live.close();
});

test("hello, then viewers as another watcher joins, then quality", { skip: SKIP }, async () => {
  const sid = await startWatch("js_alice");
  const live = client(sid, () => bearer("js_alice"));
  const hello = next(live, "hello");
  const ended = live.start();
  const h = await hello;
  assert.equal(h.session.session_id, sid);
  assert.equal(h.stream.is_live, true);
  assert.ok(h.token.token && h.token.stream_url.endsWith(".m3u8"));
  assert.ok(h.epg.current_program.title);
  assert.equal(live.streamToken.token, h.token.token);
  // Counts may be up to viewer_interval old: wait for the one that includes the second watcher.
  const viewers = until(live, "viewers", (m) => m.watching_now >= 2);
  const other = await startWatch("js_bob");
  const v = await viewers;
  assert.equal(v.watching_now, 2);
  assert.equal(v.watching_now_formatted, "2");
  const token = next(live, "token");
  live.setQuality("480p");
  const t = await token;
  assert.equal(t.reason, "quality");
  assert.equal(t.quality, "480p");
  live.close();
  assert.equal(await ended, null);
  await rest("DELETE", `/creators/${CREATOR}/channel/live/watch?session_id=${other}`, { user: "js_bob" });
});

test("iterates messages and ends on a terminal close (4009 after DELETE)", { skip: SKIP }, async () => {
  const sid = await startWatch("js_carol");
  const live = client(sid, bearer("js_carol"));
  const seen = [];
  for await (const msg of live) {
    seen.push(msg.type);
    if (msg.type === "hello") {
      await rest("DELETE", `/creators/${CREATOR}/channel/live/watch?session_id=${sid}`, { user: "js_carol" });
    }
  }
  // Another test's watchers may move the count meanwhile: only channel events may come between.
  assert.equal(seen[0], "hello");
  assert.equal(seen.at(-1), "session");
  assert.ok(seen.slice(1, -1).every((t) => ["viewers", "epg", "stream"].includes(t)), seen.join());
  assert.equal(live.lastCloseCode, 4009);
  const result = await live.start();
  assert.ok(result instanceof LiveClosed && result.code === 4009);
});

test("an unknown session ends with 4004", { skip: SKIP }, async () => {
  const live = client("sess_watch_nope", bearer("js_dave"));
  const event = await Promise.all([next(live, "close"), live.start()]).then(([e]) => e);
  assert.equal(event.code, 4004);
  assert.ok(event.error instanceof LiveClosed);
});

test("a 4001 asks the token provider again", { skip: SKIP }, async () => {
  const sid = await startWatch("js_erin");
  let calls = 0;
  const live = client(sid, async () => (++calls === 1 ? bearer("js_erin", { secret: "wrong" }) : bearer("js_erin")));
  const reconnect = next(live, "reconnect");
  const hello = next(live, "hello");
  live.start();
  assert.equal((await reconnect).code, 4001);
  assert.equal((await hello).session.session_id, sid);
  assert.equal(calls, 2);
  live.close();
  // A fixed token cannot get better: 4001 ends it.
  const fixed = client(sid, bearer("js_erin", { secret: "wrong" }));
  assert.equal((await fixed.start()).code, 4001);
});

test(
  "a draining instance (1012) moves the client to the next one, which resumes",
  { skip: SKIP || (PIDS.length < 2 ? "needs two instances" : false) },
  async () => {
    const sid = await startWatch("js_frank");
    const live = client(sid, () => bearer("js_frank"));
    const first = next(live, "hello");
    live.start();
    await first;
    const opened = [];
    live.on("open", (e) => opened.push(e));
    const reconnect = next(live, "reconnect", 20000);
    const hello = next(live, "hello", 20000);
    process.kill(PIDS[0], "SIGTERM"); // URLS[0]'s instance drains: every socket gets 1012
    assert.equal((await reconnect).code, 1012);
    const h2 = await hello; // the other instance answers the resume with a fresh snapshot
    assert.equal(h2.session.session_id, sid);
    assert.equal(opened[0].resumed, true);
    assert.equal(opened[0].url, URLS[1]);
    live.close();
  },
);
