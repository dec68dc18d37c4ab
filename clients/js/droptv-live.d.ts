// Type declarations of droptv-live.js: the droptv.live.v1 websocket protocol (server/asyncapi.py
// publishes the same messages as AsyncAPI 3.0 at GET /asyncapi.json).

export declare const SUBPROTOCOL: "droptv.live.v1";

export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  ABNORMAL: 1006;
  TOO_BIG: 1009;
  INTERNAL: 1011;
  DRAINING: 1012;
  UNAUTHORIZED: 4001;
  FORBIDDEN: 4003;
  SESSION_NOT_FOUND: 4004;
  TOO_SLOW: 4008;
  SESSION_ENDED: 4009;
  RATE_LIMITED: 4029;
}>;
export declare const TERMINAL_CODES: ReadonlySet<number>;
export declare const CHANNEL_EVENTS: ReadonlySet<"viewers" | "epg" | "stream">;
export declare const MESSAGE_TYPES: readonly ServerMessage["type"][];

/** Every server message carries the channel's position and the event's origin time. */
export interface Position {
  epoch: string;
  seq: number;
  /** Origin time, unix seconds. */
  ts: number;
}

export interface ViewerNumbers {
  watching_now: number;
  watching_now_formatted: string;
  delta: number;
  peak_today: number;
  peak_today_formatted: string;
}

export interface StreamToken {
  token: string;
  /** ISO 8601 instant. */
  token_expires_at: string;
  stream_url: string;
  quality: string;
}

export interface EpgCurrent {
  program_id: string;
  title: string;
  elapsed_minutes: number;
  remaining_minutes: number;
  progress_percent: number;
}

export interface EpgNext {
  program_id: string;
  title: string;
  starts_in_minutes: number;
  start_time_formatted: string;
}

export interface Epg {
  current_program: EpgCurrent | null;
  next_program: EpgNext | null;
}

export interface HelloMessage extends Position {
  type: "hello";
  session: {
    session_id: string;
    started_at: string;
    expires_at: string;
    device_type: string;
    quality: string;
    timezone: string;
  };
  stream: {
    stream_id: string;
    is_live: boolean;
    health: string;
    title: string;
    started_at: string;
    latency_mode: string;
  } | null;
  viewers: ViewerNumbers;
  epg: Epg;
  token: StreamToken | null;
  ping_interval: number;
}
export interface ViewersMessage extends Position, ViewerNumbers {
  type: "viewers";
}
export interface EpgMessage extends Position, Epg {
  type: "epg";
}
export interface StreamMessage extends Position {
  type: "stream";
  stream_id: string | null;
  is_live: boolean;
  health: "good" | "fair" | "poor" | null;
  title: string | null;
}
export interface TokenMessage extends Position, StreamToken {
  type: "token";
  reason: "refresh" | "quality" | "stream" | "rotation" | string;
}
export interface SessionMessage extends Position {
  type: "session";
  session_id: string;
  state: "ended" | "expired" | "replaced" | string;
  reason: string;
}
export interface ErrorMessage extends Position {
  type: "error";
  code: number;
  message: string;
  field?: string | null;
}

export type ServerMessage =
  | HelloMessage
  | ViewersMessage
  | EpgMessage
  | StreamMessage
  | TokenMessage
  | SessionMessage
  | ErrorMessage;

export type Quality = "auto" | "1080p" | "720p" | "480p" | "360p";
export type ClientMessage =
  | { type: "quality"; quality: Quality }
  | { type: "resume"; epoch: string; last_seq: number }
  | {
      type: "playback";
      state: "playing" | "paused" | "buffering" | "stopped";
      position_seconds?: number;
      bitrate_kbps?: number;
      buffer_seconds?: number;
    };

export declare class LiveClosed extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason?: string);
}

/** A bearer token, or a function that returns one (asked before every connect). */
export type TokenProvider = string | (() => string | Promise<string>);

export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface LiveClientOptions {
  /** One instance base URL (http(s)://host:port) or several, tried in turn. */
  urls: string | string[];
  creatorId: string;
  /** data.session.session_id of POST /creators/{creator_id}/channel/live/watch. */
  sessionId: string;
  token: TokenProvider;
  /** First reconnect delay, ms (default 100); doubled per attempt, jittered 50–100 %. */
  backoffInitial?: number;
  /** Cap of the delay, ms (default 5000); the wait after a 4029 is at least this. */
  backoffMax?: number;
  /** Consecutive failed connects before giving up (default 50). */
  maxAttempts?: number;
  /** A WHATWG WebSocket constructor (default globalThis.WebSocket). */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocketLike;
  /** Random source in [0, 1) for the jitter (tests). */
  random?: () => number;
}

export interface LiveEvents {
  hello: HelloMessage;
  viewers: ViewersMessage;
  epg: EpgMessage;
  stream: StreamMessage;
  token: TokenMessage;
  session: SessionMessage;
  error: ErrorMessage;
  /** Every accepted server message (replays already dropped). */
  message: ServerMessage;
  open: { url: string; connects: number; resumed: boolean };
  reconnect: { code: number; reason: string; delay: number; url: string };
  /** The client ended: `error` is the LiveClosed of a terminal code, null after close(). */
  close: { code: number; error: LiveClosed | null };
}

export declare class LiveClient implements AsyncIterable<ServerMessage> {
  constructor(options: LiveClientOptions);
  readonly urls: string[];
  readonly creatorId: string;
  readonly sessionId: string;
  epoch: string | null;
  seq: number;
  connects: number;
  lastCloseCode: number | null;
  closed: boolean;
  /** The stream token pushed last (hello / token), null while offline. */
  streamToken: StreamToken | null;
  readonly currentUrl: string;
  on<K extends keyof LiveEvents>(type: K, handler: (event: LiveEvents[K]) => void): () => void;
  once<K extends keyof LiveEvents>(type: K): Promise<LiveEvents[K]>;
  /** Resolves when the client ends: the LiveClosed that ended it, or null. Never rejects. */
  start(): Promise<LiveClosed | null>;
  close(): void;
  send(message: ClientMessage): void;
  setQuality(quality: Quality): void;
  sendPlayback(
    state: "playing" | "paused" | "buffering" | "stopped",
    extra?: { position_seconds?: number; bitrate_kbps?: number; buffer_seconds?: number },
  ): void;
  /** Epoch/seq bookkeeping: false for a replayed channel event. */
  accept(message: ServerMessage): boolean;
  [Symbol.asyncIterator](): AsyncIterator<ServerMessage>;
}

export interface HlsStreamAuth {
  readonly token: string | null;
  signUrl(url: string): string;
  /** hls.js `xhrSetup`. */
  xhrSetup(xhr: XMLHttpRequest, url: string): void;
  /** hls.js `fetchSetup`. */
  fetchSetup(context: { url: string }, initParams: RequestInit): Request;
}

export declare function hlsStreamAuth(
  client: LiveClient,
  options?: { param?: string; header?: boolean },
): HlsStreamAuth;

export default LiveClient;
