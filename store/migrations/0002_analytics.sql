-- Live analytics (endpoints 51-54): sessions, heartbeats and player events.
--
-- These tables reference no other table: ingest must accept any stream id a
-- player sends, also for streams this database does not know. Client
-- timestamps are kept twice, as sent (*_text) and parsed (timestamptz), beside
-- the server's receive time (*received_at, the app's clock).

-- One row per viewing session, from start (51) to end (53) or the sweeper's timeout.
-- A row is "implicit" when it was created by a heartbeat, events or an end that
-- arrived before (or without) its start; a later start fills it in.
create table analytics_sessions (
    session_id               text primary key,
    user_id                  text,
    device_id                text,
    platform                 text,
    app_version              text,
    stream_id                text,
    channel_id               text,
    creator_id               text,
    program_id               text,
    implicit                 boolean not null default false,
    started_at               timestamptz not null,
    started_at_text          text,
    start_received_at        timestamptz,
    start_payload            jsonb,
    -- server clock of the latest message of any kind: what the sweeper measures silence by
    last_seen_at             timestamptz not null,
    -- client clock of the latest heartbeat: where a timed-out session's watch time stops
    last_heartbeat_at        timestamptz,
    ended_at                 timestamptz,
    ended_at_text            text,
    end_received_at          timestamptz,
    end_reason               text check (end_reason in ('user_exit', 'error', 'timeout', 'inactivity')),
    closed_by                text check (closed_by in ('player', 'sweeper')),
    total_watch_seconds      int check (total_watch_seconds >= 0),
    total_rebuffer_count     int,
    quality_switches         int,
    total_chat_messages_sent int,
    total_reactions_sent     int,
    programs_watched         jsonb,
    end_payload              jsonb,
    check ((ended_at is null) = (closed_by is null))
);
create index analytics_sessions_by_stream on analytics_sessions (stream_id, started_at);
create index analytics_sessions_open on analytics_sessions (last_seen_at) where ended_at is null;

-- The 30-second time series. Idempotency key: (session_id, client timestamp).
create table analytics_heartbeats (
    session_id             text not null,
    client_ts              timestamptz not null,
    client_ts_text         text not null,
    received_at            timestamptz not null,
    user_id                text,
    device_id              text not null,
    stream_id              text not null,
    channel_id             text not null,
    creator_id             text not null,
    program_id             text,
    is_playing             boolean not null,
    is_paused              boolean not null,
    is_buffering           boolean not null,
    quality                text,
    bitrate_kbps           int,
    latency_ms             double precision,
    rebuffer_count         int,
    buffer_health_seconds  double precision,
    body                   jsonb not null,
    primary key (session_id, client_ts)
);
create index analytics_heartbeats_by_stream on analytics_heartbeats (stream_id, client_ts);

-- One row per player event. Idempotency key: event_id, globally.
create table analytics_events (
    event_id        text primary key,
    session_id      text not null,
    user_id         text,
    device_id       text not null,
    stream_id       text not null,
    channel_id      text,
    creator_id      text not null,
    event_type      text not null check (event_type in (
        'stream_start', 'stream_buffer_start', 'stream_buffer_end', 'stream_reconnect',
        'stream_reconnect_success', 'stream_error', 'program_change', 'quality_change',
        'fullscreen_enter', 'fullscreen_exit', 'mute', 'unmute', 'dvr_seek', 'dvr_resume_live',
        'reaction', 'share', 'follow', 'subscribe', 'tip')),
    client_ts       timestamptz not null,
    client_ts_text  text not null,
    received_at     timestamptz not null,
    metadata        jsonb
);
create index analytics_events_by_stream on analytics_events (stream_id, event_type, client_ts);
create index analytics_events_by_session on analytics_events (session_id, client_ts);
