-- Chat, channel bans / chat timeouts, and the audit log of moderation,
-- grant and lifecycle actions.

CREATE TABLE chat_messages (
    -- Monotonic id: SSE event id, resumed with Last-Event-ID.
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id  BIGINT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    -- A user's messages go with their account.
    author_id  BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Hard cap; the per-stream limit is streams.chat_max_length (<= 2000).
    body       TEXT NOT NULL,
    -- When viewers may see it: now() normally, now() + the stream's
    -- chat_delay_seconds for held-back viewer messages.
    visible_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ NULL,
    -- SET NULL: the message stays deleted when the moderator's account goes.
    deleted_by BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT chat_messages_body_check
        CHECK (length(btrim(body)) > 0 AND length(body) <= 2000),
    CONSTRAINT chat_messages_deleted_by_check
        CHECK (deleted_by IS NULL OR deleted_at IS NOT NULL)
);
-- Last 100 messages of a stream, and resume after Last-Event-ID.
CREATE INDEX chat_messages_stream_id_id_idx ON chat_messages (stream_id, id);
-- Slow mode / rate limit / duplicate guard: a user's recent messages in a stream.
-- Also serves the author_id FK cascade.
CREATE INDEX chat_messages_author_stream_created_at_idx
    ON chat_messages (author_id, stream_id, created_at);
CREATE INDEX chat_messages_deleted_by_idx ON chat_messages (deleted_by) WHERE deleted_by IS NOT NULL;

-- Channel bans and chat timeouts in one table: both are "this user may not
-- (chat|watch) in this channel until <until>", checked by the same query and
-- lifted the same way. kind = 'ban': no chat, no tokens, removed from the
-- room; until NULL = permanent. kind = 'timeout': chat only, always with an
-- end. Rows are never deleted on unban (lifted_at is set) so the history stays.
-- Active iff lifted_at IS NULL AND (until IS NULL OR now() < until).
CREATE TABLE bans (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL DEFAULT 'ban',
    until      TIMESTAMPTZ NULL,
    reason     TEXT NULL,
    -- SET NULL: the ban stands when the moderator's account goes.
    banned_by  BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lifted_at  TIMESTAMPTZ NULL,
    lifted_by  BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT bans_kind_check CHECK (kind IN ('ban', 'timeout')),
    CONSTRAINT bans_timeout_until_check CHECK (kind = 'ban' OR until IS NOT NULL),
    CONSTRAINT bans_reason_check CHECK (reason IS NULL OR length(reason) <= 500),
    CONSTRAINT bans_lifted_by_check CHECK (lifted_by IS NULL OR lifted_at IS NOT NULL)
);
-- The access rule and chat: is this user banned / timed out in this channel?
CREATE INDEX bans_channel_user_open_idx ON bans (channel_id, user_id) WHERE lifted_at IS NULL;
CREATE INDEX bans_user_id_idx ON bans (user_id);
CREATE INDEX bans_banned_by_idx ON bans (banned_by) WHERE banned_by IS NOT NULL;
CREATE INDEX bans_lifted_by_idx ON bans (lifted_by) WHERE lifted_by IS NOT NULL;

CREATE TABLE audit_log (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- SET NULL: the entry is history and stays when the actor's account goes.
    actor_id   BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    -- The log of a channel goes with the channel.
    channel_id BIGINT NULL REFERENCES channels (id) ON DELETE CASCADE,
    action     TEXT NOT NULL,
    subject    TEXT NULL,
    details    JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Owner's audit-log page (newest first).
CREATE INDEX audit_log_channel_id_created_at_idx ON audit_log (channel_id, created_at DESC);
CREATE INDEX audit_log_actor_id_idx ON audit_log (actor_id) WHERE actor_id IS NOT NULL;
