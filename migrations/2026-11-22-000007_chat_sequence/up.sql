-- Chat as a per-stream event log that SSE clients resume without gaps.
--
-- Identity ids commit out of order (a transaction holding id 7 may commit
-- after the one holding id 8), so they cannot be a resume cursor. Instead each
-- stream counts its chat events in streams.chat_seq, bumped under the stream
-- row's lock in the same transaction as the event: per stream, seqs are dense
-- and commit in order. Two kinds of event take a seq:
--   * a message becoming visible (chat_messages.seq): at once for the team and
--     when there is no hold-back delay, else when its visible_at comes (a held
--     message has seq NULL until then, so resuming never skips one);
--   * a visible message being deleted (chat_messages.deleted_seq).
-- The SSE event id is the seq; Last-Event-ID = "I have every event up to N".
ALTER TABLE streams ADD COLUMN chat_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE streams ADD CONSTRAINT streams_chat_seq_check CHECK (chat_seq >= 0);
-- The limits the studio form offers (slow mode up to an hour, delay up to a minute).
ALTER TABLE streams ADD CONSTRAINT streams_chat_slow_mode_seconds_max_check
    CHECK (chat_slow_mode_seconds <= 3600);
ALTER TABLE streams ADD CONSTRAINT streams_chat_delay_seconds_max_check
    CHECK (chat_delay_seconds <= 60);

ALTER TABLE chat_messages ADD COLUMN seq BIGINT NULL;
ALTER TABLE chat_messages ADD COLUMN deleted_seq BIGINT NULL;

-- Messages written before this migration: numbered in id order, once visible.
WITH numbered AS (
    SELECT id, row_number() OVER (PARTITION BY stream_id ORDER BY id) AS n
    FROM chat_messages WHERE visible_at <= now()
)
UPDATE chat_messages m SET seq = numbered.n FROM numbered WHERE m.id = numbered.id;
UPDATE streams s SET chat_seq = sub.top
FROM (SELECT stream_id, max(seq) AS top FROM chat_messages GROUP BY stream_id) sub
WHERE s.id = sub.stream_id AND sub.top IS NOT NULL;

ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_stream_id_seq_key UNIQUE (stream_id, seq);
ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_stream_id_deleted_seq_key UNIQUE (stream_id, deleted_seq);
-- Only a visible message's deletion is an event (a held one was never shown).
ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_deleted_seq_check
    CHECK (deleted_seq IS NULL OR (deleted_at IS NOT NULL AND seq IS NOT NULL AND deleted_seq > seq));
-- (stream_id, seq) now serves the last-100 query, resuming, and the stream FK.
DROP INDEX chat_messages_stream_id_id_idx;
-- The releaser: held messages whose time has come.
CREATE INDEX chat_messages_held_idx ON chat_messages (visible_at)
    WHERE seq IS NULL AND deleted_at IS NULL;

-- Who may chat changes when a ban or timeout is set or lifted, a grant is
-- revoked or shortened, or the team changes: every app instance's chat hub
-- re-checks that user's open chat streams in that channel at once
-- ('u:<channel>:<user>'; identical payloads in one transaction arrive once).
CREATE FUNCTION stagepass_chat_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_channel BIGINT;
    v_user BIGINT;
BEGIN
    IF TG_OP = 'DELETE' THEN
        v_channel := OLD.channel_id;
        v_user := OLD.user_id;
    ELSE
        v_channel := NEW.channel_id;
        v_user := NEW.user_id;
    END IF;
    PERFORM pg_notify('stagepass_chat', 'u:' || v_channel || ':' || v_user);
    RETURN NULL;
END;
$$;

CREATE TRIGGER bans_chat_notify AFTER INSERT OR UPDATE ON bans
    FOR EACH ROW EXECUTE FUNCTION stagepass_chat_notify_user();
CREATE TRIGGER channel_members_chat_notify AFTER INSERT OR UPDATE OR DELETE ON channel_members
    FOR EACH ROW EXECUTE FUNCTION stagepass_chat_notify_user();
CREATE TRIGGER access_grants_chat_notify AFTER UPDATE ON access_grants
    FOR EACH ROW
    WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at)
    EXECUTE FUNCTION stagepass_chat_notify_user();
