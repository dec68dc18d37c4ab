-- Instances that hold websockets, with their last sign of life (one row per instance, written
-- every session_ttl/3): a session whose socket an instance seen within session_ttl holds is
-- live without any per-session write (store.sockets). Presence itself is in Redis.
create table instances (
    instance_id text primary key,
    seen_at     timestamptz not null default now()
);
