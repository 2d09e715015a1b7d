-- Go-live notifications for followers (the bell) and channel owners'
-- outgoing webhooks with their delivery log.

CREATE TABLE notifications (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    stream_id  BIGINT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    read_at    TIMESTAMPTZ NULL,
    CONSTRAINT notifications_kind_check CHECK (kind IN ('live', 'scheduled')),
    -- Going live twice (or a retried fan-out) notifies once; a reschedule
    -- refreshes the existing row (ON CONFLICT DO UPDATE).
    CONSTRAINT notifications_user_id_stream_id_kind_key UNIQUE (user_id, stream_id, kind)
);
-- The list (newest first) and the unread count on every page.
CREATE INDEX notifications_user_id_id_idx ON notifications (user_id, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;
CREATE INDEX notifications_stream_id_idx ON notifications (stream_id);
CREATE INDEX notifications_channel_id_idx ON notifications (channel_id);

CREATE TABLE webhook_endpoints (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    -- HMAC-SHA256 signing secret: never logged; shown masked, with reveal.
    secret      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_url_check
        CHECK (url ~ '^https?://[^[:space:]]+$' AND length(url) <= 2000),
    CONSTRAINT webhook_endpoints_secret_check CHECK (length(secret) >= 16)
);
CREATE INDEX webhook_endpoints_channel_id_idx ON webhook_endpoints (channel_id);

-- One event for one endpoint, retried with backoff by the delivery worker.
CREATE TABLE webhook_deliveries (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- Sent to the receiver (in the body and a header) so it can deduplicate.
    event_id        TEXT NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    event           TEXT NOT NULL,
    -- What the event is about ('stream:12', 'recording:7'): the same event
    -- about the same thing is enqueued once per endpoint.
    subject         TEXT NOT NULL,
    payload         JSONB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NULL DEFAULT now(),
    last_error      TEXT NULL,
    last_status     INTEGER NULL,
    delivered_at    TIMESTAMPTZ NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT webhook_deliveries_event_check
        CHECK (event IN ('stream.started', 'stream.ended', 'recording.ready')),
    CONSTRAINT webhook_deliveries_status_check
        CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_attempts_check CHECK (attempts >= 0),
    CONSTRAINT webhook_deliveries_pending_check
        CHECK (status <> 'pending' OR next_attempt_at IS NOT NULL),
    CONSTRAINT webhook_deliveries_endpoint_id_event_subject_key
        UNIQUE (endpoint_id, event, subject)
);
-- The worker's queue (FOR UPDATE SKIP LOCKED over due rows).
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';

-- Every attempt, for the delivery log on the settings page.
CREATE TABLE webhook_attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    duration_ms INTEGER NOT NULL,
    -- The receiver's HTTP status, or NULL when there was none (refused,
    -- timed out); then `error` says what happened.
    status_code INTEGER NULL,
    error       TEXT NULL,
    CONSTRAINT webhook_attempts_attempt_check CHECK (attempt > 0),
    CONSTRAINT webhook_attempts_duration_ms_check CHECK (duration_ms >= 0),
    CONSTRAINT webhook_attempts_delivery_id_attempt_key UNIQUE (delivery_id, attempt)
);
