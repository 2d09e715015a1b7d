-- LiveKit side: recordings (egress), room presence, and the webhook
-- idempotency log.

CREATE TABLE recordings (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: a recording row is the only handle on an S3 object. The app
    -- deletes recordings (object, then row) before their stream can go, so no
    -- object is orphaned by a cascade.
    stream_id   BIGINT NOT NULL REFERENCES streams (id) ON DELETE RESTRICT,
    egress_id   TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL DEFAULT 'starting',
    object_key  TEXT NULL,
    duration_ms BIGINT NULL,
    size_bytes  BIGINT NULL,
    -- Failure reason, shown to the owner.
    error       TEXT NULL,
    started_at  TIMESTAMPTZ NULL,
    ended_at    TIMESTAMPTZ NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT recordings_status_check
        CHECK (status IN ('starting', 'active', 'ending', 'complete', 'failed')),
    CONSTRAINT recordings_duration_ms_check CHECK (duration_ms IS NULL OR duration_ms >= 0),
    CONSTRAINT recordings_size_bytes_check CHECK (size_bytes IS NULL OR size_bytes >= 0),
    CONSTRAINT recordings_started_before_ended_check
        CHECK (started_at IS NULL OR ended_at IS NULL OR started_at <= ended_at)
);
-- At most one recording starting or running per stream: racing or repeated
-- "start" requests cannot start two egresses' worth of rows. ('ending' is
-- not included, so stop-then-start does not wait for egress_ended.)
CREATE UNIQUE INDEX recordings_one_running_per_stream_key
    ON recordings (stream_id) WHERE status IN ('starting', 'active');
-- Replays list of a stream; retention job.
CREATE INDEX recordings_stream_id_created_at_idx ON recordings (stream_id, created_at DESC);
CREATE INDEX recordings_created_at_idx ON recordings (created_at);

CREATE TRIGGER recordings_set_updated_at BEFORE UPDATE ON recordings
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

-- Who is in which room since when, from participant_joined / _left webhooks.
CREATE TABLE presence (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       BIGINT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    room_name       TEXT NOT NULL,
    -- NULL for participants that are not users (egress, ingress) and after
    -- the user's account is deleted: SET NULL keeps watch-time and peak
    -- statistics of the stream intact.
    user_id         BIGINT NULL REFERENCES users (id) ON DELETE SET NULL,
    identity        TEXT NOT NULL,
    -- One row per LiveKit participant session: joined/left webhooks in any
    -- order upsert the same row.
    participant_sid TEXT NOT NULL UNIQUE,
    joined_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at         TIMESTAMPTZ NULL,
    CONSTRAINT presence_left_after_joined_check CHECK (left_at IS NULL OR left_at >= joined_at)
);
-- Who is in the room now (viewer count, removal when a grant ends or on ban).
CREATE INDEX presence_open_idx ON presence (stream_id, user_id) WHERE left_at IS NULL;
CREATE INDEX presence_user_id_idx ON presence (user_id) WHERE user_id IS NOT NULL;

-- Webhook events already applied (dedupe on LiveKit's event id).
CREATE TABLE livekit_events (
    event_id    TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    payload     JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Cleanup of old entries.
CREATE INDEX livekit_events_received_at_idx ON livekit_events (received_at);
