-- The token endpoint's database round trips (POST /s/{id}/token), as a pgbench
-- script: what the database alone can answer, the ceiling under the endpoint.
-- bench/bench.py runs it with `pgbench -n -M prepared -f bench/token.sql`
-- and `-D session=… -D user=… -D stream=…` (one viewer, as oha's requests).
--
-- It mirrors src/auth/session_store.rs (loading the session, with its user:
-- src/db/sessions.rs) and src/access.rs (find_stream: the stream with the
-- access rule's facts, FACTS_SQL) and MUST CHANGE WITH THEM: a query changed
-- there and not here makes the "database limit" row of the bench report
-- measure something else.
--
-- With -M prepared pgbench turns each :name into a bind parameter ($1, $2, …),
-- sent as text and typed by the server, as the app's binds are; so :session is
-- written bare (a quoted ':session' would be the literal text), and :user is
-- cast as the app casts it.
--
-- Each statement ends in \gset (its row into variables a_*, b_*) rather than
-- `;`: pgbench then fails a transaction whose statement returned no row, so an
-- expired session or a missing stream cannot pass for a fast database.

-- (a) The session with its user, one statement (db::sessions::load_with_user;
-- diesel's .first() adds the LIMIT, its now is CURRENT_TIMESTAMP, the same).
SELECT s.data, s.expires_at, u.id, u.email, u.display_name, u.created_at, u.updated_at
  FROM sessions s LEFT JOIN users u ON u.id = s.user_id
 WHERE s.id = :session AND s.expires_at > now()
 LIMIT 1
\gset a_

-- (b) The stream and the access rule's facts for (user, its channel, it):
-- access.rs's StreamFactsQuery (STREAM_SQL around FACTS_SQL's columns and
-- chain), with sql::with's placeholders written out ($u -> p.u, $c -> p.c,
-- $s -> p.s, $ban -> 'ban').
SELECT st.id, st.channel_id, st.title, st.description, st.access, st.status, st.scheduled_at,
       st.started_at, st.ended_at, st.room_name, st.record_on_live, st.peak_viewers, st.created_at,
       (SELECT m.role FROM channel_members m WHERE m.channel_id = p.c AND m.user_id = p.u) AS role,
       EXISTS (SELECT 1 FROM channels o WHERE o.id = p.c AND o.owner_id = p.u) AS owner,
       EXISTS (SELECT 1 FROM bans b WHERE b.channel_id = p.c AND b.user_id = p.u AND b.kind = 'ban' AND b.lifted_at IS NULL AND (b.until IS NULL OR now() < b.until)) AS banned,
       chain.until AS grant_until,
       CASE WHEN chain.until IS NULL THEN EXISTS (SELECT 1 FROM access_grants g WHERE g.user_id = p.u AND g.channel_id = p.c AND (g.stream_id IS NULL OR g.stream_id = p.s) AND (g.revoked_at IS NOT NULL OR g.expires_at <= now())) ELSE false END AS had_grant
  FROM streams st
 CROSS JOIN LATERAL (SELECT st.channel_id AS c, :user::int8 AS u, st.id AS s) p
 CROSS JOIN LATERAL (WITH RECURSIVE chain(until) AS ( SELECT max(g.expires_at) FROM access_grants g WHERE g.user_id = p.u AND g.channel_id = p.c AND (g.stream_id IS NULL OR g.stream_id = p.s) AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at UNION SELECT g.expires_at FROM access_grants g JOIN chain ON g.user_id = p.u AND g.channel_id = p.c AND (g.stream_id IS NULL OR g.stream_id = p.s) AND g.revoked_at IS NULL AND g.starts_at <= chain.until AND g.expires_at > chain.until) SELECT max(until) AS until FROM chain OFFSET 0) chain
 WHERE st.id = :stream
\gset b_
