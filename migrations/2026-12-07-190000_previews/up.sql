-- Free previews of pass-only streams: the owner sets a length per stream;
-- a visitor without a pass watches that much of the live stream once.
ALTER TABLE streams
    ADD COLUMN preview_seconds integer
        CHECK (preview_seconds IS NULL OR preview_seconds BETWEEN 30 AND 600);

-- One row per preview given: per account (user_id), and for guests per
-- LiveKit identity (their cookie) and per address, so that clearing cookies
-- does not start another. `identity` is who the enforcer lets stay in the
-- room until `ends_at`.
CREATE TABLE previews (
    id BIGSERIAL PRIMARY KEY,
    stream_id BIGINT NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    identity TEXT NOT NULL,
    address TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ends_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT previews_ends_after_start CHECK (ends_at > started_at)
);
CREATE UNIQUE INDEX previews_stream_identity_idx ON previews (stream_id, identity);
CREATE INDEX previews_stream_user_idx ON previews (stream_id, user_id) WHERE user_id IS NOT NULL;
CREATE INDEX previews_stream_address_idx ON previews (stream_id, address) WHERE user_id IS NULL;

-- A preview starting wakes every instance's enforcer, which then sleeps
-- until the preview's end (as for a grant's end).
CREATE TRIGGER previews_notify AFTER INSERT ON previews
    FOR EACH STATEMENT EXECUTE FUNCTION stagepass_notify_access_changed();

-- The funnel's "previewed" step.
ALTER TABLE funnel_events DROP CONSTRAINT funnel_events_step_check;
ALTER TABLE funnel_events ADD CONSTRAINT funnel_events_step_check
    CHECK (step IN ('denied_visit', 'previewed', 'pass_page', 'checkout_started', 'paid'));
