DROP TRIGGER channels_hidden_notify ON channels;
DELETE FROM notifications WHERE kind = 'application';
ALTER TABLE notifications
    DROP CONSTRAINT notifications_kind_check,
    DROP COLUMN application_id,
    ALTER COLUMN channel_id SET NOT NULL,
    ALTER COLUMN stream_id SET NOT NULL,
    ADD CONSTRAINT notifications_kind_check CHECK (kind IN ('live', 'scheduled'));
DROP TRIGGER users_suspended_notify ON users;
DROP FUNCTION stagepass_notify_user_suspended();
DROP TABLE creator_applications;
DROP INDEX audit_log_admin_idx;
ALTER TABLE streams DROP COLUMN chat_followers_min_seconds;
ALTER TABLE channels DROP COLUMN hidden_at, DROP COLUMN hidden_reason;
DROP INDEX users_suspended_idx;
ALTER TABLE users DROP COLUMN is_admin, DROP COLUMN suspended_at,
    DROP COLUMN suspended_reason, DROP COLUMN creator_approved_at;
