-- Stream tokens are signed with a per-channel key derived from the master stream key and
-- this version; rotating a channel's key bumps it (and every watcher gets a new token).
alter table channels add column stream_key_version int not null default 1;
