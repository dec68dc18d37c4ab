-- The secret stream key an encoder publishes with (RTMP stream name). One per channel,
-- created on first read; rotating keeps the previous key valid for unpublish only, so an
-- encoder that was live when the key rotated can still take the channel offline.
create table ingest_keys (
    channel_id    text primary key references channels on delete cascade,
    stream_key    text not null unique,
    previous_key  text unique,
    rotated_at    timestamptz not null default now()
);
