-- Creators, channels, streams (with their live/offline history), EPG, on-demand
-- content, entitlements, watch sessions and viewer peaks.

create table creators (
    creator_id   text primary key,
    name         text not null,
    is_verified  boolean not null default false,
    created_at   timestamptz not null default now()
);

create table channels (
    channel_id             text primary key,
    creator_id             text not null unique references creators on delete cascade,
    channel_name           text not null,
    channel_number         int not null unique,
    requires_subscription  boolean not null default false,
    created_at             timestamptz not null default now()
);

-- One row per broadcast; ended_at null means live. At most one live stream per channel.
create table streams (
    stream_id          text primary key,
    channel_id         text not null references channels on delete cascade,
    title              text not null,
    started_at         timestamptz not null default now(),
    ended_at           timestamptz,
    health             text not null default 'good' check (health in ('good', 'fair', 'poor')),
    latency_mode       text not null default 'low' check (latency_mode in ('low', 'normal')),
    bitrate_kbps       int not null default 6000,
    resolution         text not null default '1080p',
    frame_rate         int not null default 30,
    cdn_provider       text not null default 'cloudfront',
    cdn_region         text not null default 'us-east-1',
    cdn_edge_location  text not null default 'Atlanta, GA',
    drm_enabled        boolean not null default false,
    drm_type           text,
    drm_license_url    text,
    dvr_enabled        boolean not null default true
);
create unique index streams_one_live_per_channel on streams (channel_id) where ended_at is null;
create index streams_by_channel on streams (channel_id, started_at desc);

create table programs (
    program_id     text primary key,
    channel_id     text not null references channels on delete cascade,
    title          text not null,
    description    text,
    thumbnail_url  text,
    starts_at      timestamptz not null,
    ends_at        timestamptz not null,
    check (ends_at > starts_at)
);
create index programs_by_channel_time on programs (channel_id, starts_at);

create table content (
    content_id      text primary key,
    creator_id      text not null references creators on delete cascade,
    type            text not null check (type in ('free', 'premium', 'ppv')),
    title           text not null,
    thumbnail_url   text,
    duration_seconds int not null check (duration_seconds >= 0),
    season          int,
    episode_number  int,
    views           bigint not null default 0,
    price           numeric(10, 2),
    currency        text,
    published_at    timestamptz not null default now(),
    check (type <> 'ppv' or (price is not null and currency is not null))
);
create index content_by_creator on content (creator_id, season, episode_number, published_at);

create table follows (
    user_id     text not null,
    creator_id  text not null references creators on delete cascade,
    created_at  timestamptz not null default now(),
    primary key (user_id, creator_id)
);

-- A subscription unlocks premium content and subscription-only channels; expires_at null = open-ended.
create table subscriptions (
    user_id     text not null,
    creator_id  text not null references creators on delete cascade,
    expires_at  timestamptz,
    created_at  timestamptz not null default now(),
    primary key (user_id, creator_id)
);

create table ppv_purchases (
    user_id      text not null,
    content_id   text not null references content on delete cascade,
    purchased_at timestamptz not null default now(),
    primary key (user_id, content_id)
);

-- A watch session counts as "watching now" while ended_at is null, expires_at is
-- ahead and last_seen_at is within session_ttl (liveness: websocket or REST heartbeat).
-- reported_watching is the count this session was last told, for the heartbeat's delta.
create table watch_sessions (
    session_id    text primary key,
    user_id       text not null,
    creator_id    text not null references creators on delete cascade,
    channel_id    text not null references channels on delete cascade,
    stream_id     text not null references streams on delete cascade,
    device_type   text not null,
    quality       text not null,
    timezone      text not null default 'UTC',
    started_at    timestamptz not null default now(),
    last_seen_at  timestamptz not null default now(),
    expires_at    timestamptz not null,
    ended_at      timestamptz,
    end_reason    text,
    reported_watching int not null default 0
);
create index watch_sessions_live_by_channel on watch_sessions (channel_id, last_seen_at) include (device_type) where ended_at is null;
create index watch_sessions_live_by_user on watch_sessions (user_id, last_seen_at) where ended_at is null;
create index watch_sessions_live_by_stream on watch_sessions (stream_id) where ended_at is null;

-- Peaks only ever rise (greatest()), so late or out-of-order samples never lower them.
create table channel_peaks_daily (
    channel_id  text not null references channels on delete cascade,
    day         date not null,
    peak        int not null,
    peak_at     timestamptz not null default now(),
    primary key (channel_id, day)
);

create table channel_peaks_all_time (
    channel_id  text primary key references channels on delete cascade,
    peak        int not null,
    peak_at     timestamptz not null default now()
);
