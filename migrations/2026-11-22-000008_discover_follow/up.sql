-- Discover and follow: followers of channels, channel links and avatar,
-- stream thumbnails, and the indexes that keep the home page and search fast
-- with many thousands of streams.

-- Trigram indexes make `ILIKE '%term%'` searches use an index (pg_trgm is a
-- trusted extension: the database owner may create it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE follows (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Following twice is one follow (INSERT … ON CONFLICT DO NOTHING).
    PRIMARY KEY (user_id, channel_id)
);
-- Follower counts and the go-live fan-out to followers.
CREATE INDEX follows_channel_id_idx ON follows (channel_id);

-- S3 object keys of images the app re-encoded and stored; NULL = default image.
ALTER TABLE channels ADD COLUMN avatar_key TEXT NULL;
ALTER TABLE streams ADD COLUMN thumbnail_key TEXT NULL;

-- Links on the channel page (website, socials), in the owner's order.
CREATE TABLE channel_links (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    label      TEXT NOT NULL,
    url        TEXT NOT NULL,
    CONSTRAINT channel_links_position_check CHECK (position >= 0),
    CONSTRAINT channel_links_label_check
        CHECK (length(btrim(label)) > 0 AND length(label) <= 60),
    CONSTRAINT channel_links_url_check
        CHECK (url ~ '^https?://[^[:space:]]+$' AND length(url) <= 2000),
    CONSTRAINT channel_links_channel_id_position_key UNIQUE (channel_id, position)
);

-- Home page: live now (newest first) and starting soon (a draft with a
-- schedule is announced; one without is the team's business).
CREATE INDEX streams_live_started_at_idx ON streams (started_at DESC) WHERE status = 'live';
CREATE INDEX streams_scheduled_at_idx ON streams (scheduled_at)
    WHERE status = 'draft' AND scheduled_at IS NOT NULL;
-- Search by name.
CREATE INDEX streams_title_trgm_idx ON streams USING gin (title gin_trgm_ops);
CREATE INDEX channels_title_trgm_idx ON channels USING gin (title gin_trgm_ops);
CREATE INDEX channels_handle_trgm_idx ON channels USING gin (handle gin_trgm_ops);
