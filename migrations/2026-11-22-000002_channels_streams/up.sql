-- Channels (a creator's space), their team, and their streams.

CREATE TABLE channels (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- URL slug (/c/{handle}); stored lowercase so the plain UNIQUE is
    -- case-insensitive in effect: 3-40 chars, a-z 0-9 and inner hyphens.
    handle      TEXT NOT NULL UNIQUE,
    title       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- RESTRICT: a channel carries streams, passes and money records; deleting
    -- its owner's account must not silently take all of that with it. The
    -- channel is transferred or deleted explicitly first.
    owner_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    -- Recordings older than this are removed by the retention job; NULL = keep.
    recording_retention_days INTEGER NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT channels_handle_check
        CHECK (handle ~ '^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$'),
    CONSTRAINT channels_title_check
        CHECK (length(btrim(title)) > 0 AND length(title) <= 100),
    CONSTRAINT channels_description_check
        CHECK (length(description) <= 5000),
    CONSTRAINT channels_recording_retention_days_check
        CHECK (recording_retention_days IS NULL OR recording_retention_days > 0)
);
CREATE INDEX channels_owner_id_idx ON channels (owner_id);

CREATE TRIGGER channels_set_updated_at BEFORE UPDATE ON channels
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

-- The team. The owner also has a row here with role 'owner'
-- (channels.owner_id names the account that created / holds the channel).
CREATE TABLE channel_members (
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, user_id),
    CONSTRAINT channel_members_role_check CHECK (role IN ('owner', 'moderator'))
);
-- "Channels I moderate" (moderators' dashboard).
CREATE INDEX channel_members_user_id_idx ON channel_members (user_id);

CREATE TABLE streams (
    id                     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id             BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    title                  TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    access                 TEXT NOT NULL DEFAULT 'pass',
    status                 TEXT NOT NULL DEFAULT 'draft',
    scheduled_at           TIMESTAMPTZ NULL,
    started_at             TIMESTAMPTZ NULL,
    ended_at               TIMESTAMPTZ NULL,
    -- LiveKit room name: unique and unguessable (122 random bits by default).
    room_name              TEXT NOT NULL UNIQUE
                           DEFAULT ('sp-' || replace(gen_random_uuid()::text, '-', '')),
    chat_enabled           BOOLEAN NOT NULL DEFAULT true,
    chat_slow_mode_seconds INTEGER NOT NULL DEFAULT 0,
    chat_delay_seconds     INTEGER NOT NULL DEFAULT 0,
    chat_max_length        INTEGER NOT NULL DEFAULT 500,
    -- OBS ingress (all four set together, or none). The stream key is a
    -- secret: never log it.
    ingress_id             TEXT NULL UNIQUE,
    ingress_kind           TEXT NULL,
    ingress_url            TEXT NULL,
    ingress_stream_key     TEXT NULL,
    record_on_live         BOOLEAN NOT NULL DEFAULT false,
    peak_viewers           INTEGER NOT NULL DEFAULT 0,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT streams_title_check
        CHECK (length(btrim(title)) > 0 AND length(title) <= 200),
    CONSTRAINT streams_description_check CHECK (length(description) <= 10000),
    CONSTRAINT streams_access_check CHECK (access IN ('public', 'pass')),
    CONSTRAINT streams_status_check CHECK (status IN ('draft', 'live', 'ended')),
    CONSTRAINT streams_live_started_check CHECK (status <> 'live' OR started_at IS NOT NULL),
    CONSTRAINT streams_ended_at_check CHECK (status <> 'ended' OR ended_at IS NOT NULL),
    CONSTRAINT streams_started_before_ended_check
        CHECK (started_at IS NULL OR ended_at IS NULL OR started_at <= ended_at),
    CONSTRAINT streams_room_name_check CHECK (length(room_name) > 0),
    CONSTRAINT streams_chat_slow_mode_seconds_check CHECK (chat_slow_mode_seconds >= 0),
    CONSTRAINT streams_chat_delay_seconds_check CHECK (chat_delay_seconds >= 0),
    CONSTRAINT streams_chat_max_length_check CHECK (chat_max_length > 0 AND chat_max_length <= 2000),
    CONSTRAINT streams_ingress_kind_check CHECK (ingress_kind IN ('rtmp', 'whip')),
    CONSTRAINT streams_ingress_all_or_none_check
        CHECK (num_nulls(ingress_id, ingress_kind, ingress_url, ingress_stream_key) IN (0, 4)),
    CONSTRAINT streams_peak_viewers_check CHECK (peak_viewers >= 0)
);
-- Channel page (live / upcoming / past) and studio lists.
CREATE INDEX streams_channel_id_status_idx ON streams (channel_id, status, scheduled_at);
-- The reconciler walks live streams only.
CREATE INDEX streams_live_idx ON streams (id) WHERE status = 'live';

CREATE TRIGGER streams_set_updated_at BEFORE UPDATE ON streams
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();
