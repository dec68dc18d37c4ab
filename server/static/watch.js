// The watch page: sign in with a development token, POST watch, then live over one websocket
// through the droptv-live JavaScript client (served by this server at /client/droptv-live.js).
import { LiveClient, hlsStreamAuth } from "/client/droptv-live.js";

const $ = (id) => document.getElementById(id);
const creatorId = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
const params = new URLSearchParams(location.search);
const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
const api = (path) => `/creators/${encodeURIComponent(creatorId)}/channel${path}`;

const state = {
  token: params.get("token") || sessionStorage.getItem("droptv.token") || "",
  client: null,
  auth: null,
  sessionId: null,
  epgAt: 0, // when the last EPG snapshot arrived (ms), to tick its countdowns locally
  epg: null,
  tokenExpiresAt: 0,
};

function setText(id, text) {
  const el = $(id);
  if (el.textContent !== String(text)) el.textContent = text;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h ? String(m).padStart(2, "0") : String(m);
  return `${h ? h + ":" : ""}${mm}:${String(r).padStart(2, "0")}`;
}

function setConn(kind, text) {
  $("conn").dataset.state = kind;
  setText("conn-text", text);
}

function overlay(title, sub = "") {
  $("video-overlay").hidden = !title;
  setText("overlay-title", title || "");
  setText("overlay-sub", sub);
}

function setLive(isLive) {
  const badge = $("live-badge");
  badge.dataset.live = String(isLive);
  badge.textContent = isLive ? "LIVE" : "OFFLINE";
}

function setViewers(v, delta = 0) {
  const el = $("viewers-count");
  const before = el.textContent;
  setText("viewers-count", v.watching_now_formatted);
  el.dataset.count = String(v.watching_now);
  setText("peak-today", v.peak_today_formatted ?? "–");
  if (before !== el.textContent && before !== "–") {
    el.classList.remove("bump");
    void el.offsetWidth; // restart the animation
    el.classList.add("bump");
  }
  const d = $("viewers-delta");
  d.className = "delta " + (delta > 0 ? "up" : delta < 0 ? "down" : "");
  d.textContent = delta ? `${delta > 0 ? "+" : ""}${delta} just now` : "";
}

function setHealth(health) {
  $("health").dataset.health = health || "unknown";
  setText("health", health || "–");
}

function setEpg(epg) {
  state.epg = epg;
  state.epgAt = Date.now();
  renderEpg();
}

function renderEpg() {
  const epg = state.epg;
  if (!epg) return;
  const passed = (Date.now() - state.epgAt) / 1000;
  const now = epg.current_program;
  const next = epg.next_program;
  setText("epg-now-title", now ? now.title : "Nothing scheduled");
  if (now) {
    const total = (now.elapsed_minutes + now.remaining_minutes) * 60 || 1;
    const elapsed = Math.min(total, now.elapsed_minutes * 60 + passed);
    const pct = Math.max(0, Math.min(100, (elapsed / total) * 100));
    $("epg-progress").style.width = pct.toFixed(1) + "%";
    $("epg-progress-bar").setAttribute("aria-valuenow", String(Math.round(pct)));
    setText("epg-elapsed", `${clock(elapsed)} in`);
    setText("epg-remaining", `${clock(total - elapsed)} left`);
  }
  setText("epg-next-title", next ? next.title : "—");
  setText("epg-next-time", next ? `at ${next.start_time_formatted}` : "");
  setText("epg-countdown", next ? clock(next.starts_in_minutes * 60 - passed) : "–");
}

function setToken(info, reason) {
  if (!info) {
    state.tokenExpiresAt = 0;
    setText("token-expiry", "–");
    setText("stream-url", "—");
    return;
  }
  state.tokenExpiresAt = Date.parse(info.token_expires_at);
  setText("token-quality", info.quality);
  const signed = state.auth.signUrl(info.stream_url);
  setText("stream-url", signed);
  const video = $("video");
  if (video.dataset.src !== signed) {
    video.dataset.src = signed;
    video.src = signed; // the demo CDN does not resolve here: the URL is shown above
  }
  if (reason) {
    const li = document.createElement("li");
    const at = new Date().toLocaleTimeString();
    li.innerHTML = `<span class="reason"></span> <span class="muted"></span>`;
    li.firstChild.textContent = reason;
    li.lastChild.textContent = `${at} · valid until ${new Date(state.tokenExpiresAt).toLocaleTimeString()}`;
    $("token-log").prepend(li);
  }
  tick();
}

function tick() {
  if (state.tokenExpiresAt) setText("token-expiry", clock((state.tokenExpiresAt - Date.now()) / 1000));
  renderEpg();
}
setInterval(tick, 1000);

async function request(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(json.message || `HTTP ${resp.status}`);
  return json.data;
}

async function loadChannel() {
  const resp = await fetch(api("/live"));
  const json = await resp.json();
  if (!resp.ok) throw new Error(json.message || `HTTP ${resp.status}`);
  const data = json.data;
  setText("stream-title", data.channel.stream?.title || data.channel.channel_name);
  setText("channel-line", `${data.creator_name || data.creator_id} · ${data.channel.channel_name} · ch ${data.channel.channel_number}`);
  setLive(data.is_live);
  if (data.channel.watching_now_formatted) {
    setViewers({ watching_now: data.channel.watching_now, watching_now_formatted: data.channel.watching_now_formatted });
  }
  return data;
}

async function watch() {
  $("signin-error").textContent = "";
  const channel = await loadChannel();
  if (!channel.is_live) {
    overlay("Offline", channel.message || "This channel is not live right now.");
    return;
  }
  const started = await request("POST", api("/live/watch"), {
    channel_id: channel.channel.channel_id,
    device_type: "web",
    quality: $("quality").value,
    timezone: zone,
  });
  state.sessionId = started.session.session_id;
  sessionStorage.setItem("droptv.token", state.token);
  document.body.classList.add("signed-in");
  $("leave-button").hidden = false;
  setText("session-line", `session ${state.sessionId}`);
  const client = new LiveClient({
    urls: location.origin,
    creatorId,
    sessionId: state.sessionId,
    token: () => state.token,
  });
  state.client = client;
  state.auth = hlsStreamAuth(client);
  client.on("open", (e) => setConn("open", e.resumed ? "live · resumed" : "live"));
  client.on("reconnect", (e) => setConn("reconnecting", `reconnecting (${e.code})`));
  client.on("hello", (m) => {
    overlay(m.stream ? "" : "Offline", m.stream ? "" : "The stream ended.");
    setLive(Boolean(m.stream?.is_live));
    if (m.stream) setText("stream-title", m.stream.title);
    setHealth(m.stream?.health);
    setViewers(m.viewers, 0);
    setEpg(m.epg);
    setToken(m.token, "hello");
  });
  client.on("viewers", (m) => setViewers(m, m.delta));
  client.on("epg", (m) => setEpg(m));
  client.on("stream", (m) => {
    setLive(m.is_live);
    setHealth(m.health);
    if (m.title) setText("stream-title", m.title);
    if (!m.is_live) {
      overlay("Offline", "The stream ended.");
      setToken(null);
    }
  });
  client.on("token", (m) => setToken(m, m.reason));
  client.on("session", (m) => setText("session-line", `session ${m.state} (${m.reason})`));
  client.on("close", (e) => {
    setConn("closed", e.error ? `closed (${e.code})` : "closed");
    $("leave-button").hidden = true;
  });
  client.start();
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token-input").value.trim();
  if (!state.token) {
    $("signin-error").textContent = "Paste a token first.";
    return;
  }
  watch().catch((err) => ($("signin-error").textContent = err.message));
});

$("video").addEventListener("error", () => {
  // Expected with the demo world: its CDN does not resolve here (and HLS needs a player).
  if ($("video").dataset.src) overlay("Playback unavailable here", "The stream URL is signed (below), but the demo CDN does not resolve from this machine.");
});

$("quality").addEventListener("change", () => {
  if (state.client && !state.client.closed) state.client.setQuality($("quality").value);
});

$("leave-button").addEventListener("click", async () => {
  state.client?.close();
  if (state.sessionId) await request("DELETE", api(`/live/watch?session_id=${encodeURIComponent(state.sessionId)}`)).catch(() => {});
  overlay("You left", "Reload to watch again.");
  setConn("closed", "left");
  $("leave-button").hidden = true;
});

if (state.token) {
  $("token-input").value = state.token;
  watch().catch((err) => ($("signin-error").textContent = err.message));
} else {
  loadChannel().catch((err) => overlay("Not found", err.message));
}
