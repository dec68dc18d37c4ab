-- The instance that last took a websocket for the session: a new socket replaces the old one
-- over the bus only when another instance may still hold it (store.sessions.claim_session).
alter table watch_sessions add column socket_instance text;
