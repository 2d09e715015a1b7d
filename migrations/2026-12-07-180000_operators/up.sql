-- The instance's operators: admins (made with `stagepass admin grant EMAIL`,
-- not channel team members), suspended accounts, hidden channels, creator
-- applications, and followers-only chat.

ALTER TABLE users
    ADD COLUMN is_admin boolean NOT NULL DEFAULT false,
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspended_reason text,
    -- With CREATORS=approval, only approved users create channels.
    ADD COLUMN creator_approved_at timestamptz;

CREATE INDEX users_suspended_idx ON users (id) WHERE suspended_at IS NOT NULL;

ALTER TABLE channels
    ADD COLUMN hidden_at timestamptz,
    ADD COLUMN hidden_reason text;

-- Followers-only chat: NULL is off; otherwise how long someone must have
-- followed the channel before they may post (0 = any follower).
ALTER TABLE streams
    ADD COLUMN chat_followers_min_seconds integer
        CHECK (chat_followers_min_seconds IN (0, 600, 3600, 86400, 604800));

-- The admins' audit log (`admin.*` actions) reads newest first.
CREATE INDEX audit_log_admin_idx ON audit_log (id) WHERE action LIKE 'admin.%';

CREATE TABLE creator_applications (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_name TEXT NOT NULL CHECK (char_length(channel_name) BETWEEN 1 AND 80),
    about TEXT NOT NULL CHECK (char_length(about) BETWEEN 1 AND 1000),
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    reason TEXT,
    decided_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    decided_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One open application per user.
CREATE UNIQUE INDEX creator_applications_one_pending_idx
    ON creator_applications (user_id) WHERE status = 'pending';
CREATE INDEX creator_applications_status_idx ON creator_applications (status, created_at);

-- Suspending or restoring someone changes what the access rule says about
-- them everywhere: wake every instance's enforcer, and re-check their open
-- chat streams in every channel ('s:<user>').
CREATE FUNCTION stagepass_notify_user_suspended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_access_changed', '');
    PERFORM pg_notify('stagepass_chat', 's:' || NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_suspended_notify AFTER UPDATE OF suspended_at ON users
    FOR EACH ROW WHEN (OLD.suspended_at IS DISTINCT FROM NEW.suspended_at)
    EXECUTE FUNCTION stagepass_notify_user_suspended();

-- An applicant hears the decision through the bell: notifications about an
-- application have no channel or stream.
ALTER TABLE notifications
    ALTER COLUMN channel_id DROP NOT NULL,
    ALTER COLUMN stream_id DROP NOT NULL,
    ADD COLUMN application_id BIGINT REFERENCES creator_applications (id) ON DELETE CASCADE,
    DROP CONSTRAINT notifications_kind_check,
    ADD CONSTRAINT notifications_kind_check CHECK (
        (kind IN ('live', 'scheduled') AND channel_id IS NOT NULL AND stream_id IS NOT NULL)
        OR (kind = 'application' AND application_id IS NOT NULL));

-- Hiding or showing a channel changes who may be in its rooms: wake the enforcers.
CREATE TRIGGER channels_hidden_notify AFTER UPDATE OF hidden_at ON channels
    FOR EACH ROW WHEN (OLD.hidden_at IS DISTINCT FROM NEW.hidden_at)
    EXECUTE FUNCTION stagepass_notify_access_changed();
