-- Open chat streams re-check access when something takes it away, not on a
-- timer (chat::RECHECK_BACKSTOP is only the backstop). Besides bans, team
-- changes, grants revoked or shortened and suspensions (000007, operators):

-- Everyone reading a channel's chat may lose it at once ('c:<channel>'): the
-- channel hidden, one of its streams turned from public to pass, a draft
-- made unannounced (no schedule) or deleted. Only losses notify.
CREATE FUNCTION stagepass_chat_notify_channel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_chat', 'c:' || NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER channels_hidden_chat_notify AFTER UPDATE OF hidden_at ON channels
    FOR EACH ROW WHEN (OLD.hidden_at IS NULL AND NEW.hidden_at IS NOT NULL)
    EXECUTE FUNCTION stagepass_chat_notify_channel();

CREATE FUNCTION stagepass_chat_notify_stream_channel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('stagepass_chat', 'c:' || OLD.channel_id);
    ELSE
        PERFORM pg_notify('stagepass_chat', 'c:' || NEW.channel_id);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER streams_access_chat_notify AFTER UPDATE OF access, scheduled_at ON streams
    FOR EACH ROW WHEN (
        (OLD.access = 'public' AND NEW.access = 'pass')
        OR (NEW.status = 'draft' AND OLD.scheduled_at IS NOT NULL AND NEW.scheduled_at IS NULL))
    EXECUTE FUNCTION stagepass_chat_notify_stream_channel();

CREATE TRIGGER streams_deleted_chat_notify AFTER DELETE ON streams
    FOR EACH ROW EXECUTE FUNCTION stagepass_chat_notify_stream_channel();

-- A grant deleted ends what it gave, as a revocation does.
CREATE TRIGGER access_grants_chat_notify_delete AFTER DELETE ON access_grants
    FOR EACH ROW EXECUTE FUNCTION stagepass_chat_notify_user();

-- A suspended owner's channels are hidden (channels::VISIBLE): their readers
-- lose them too, not only the owner's own chat streams.
CREATE OR REPLACE FUNCTION stagepass_notify_user_suspended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_access_changed', '');
    PERFORM pg_notify('stagepass_chat', 's:' || NEW.id);
    PERFORM pg_notify('stagepass_chat', 'c:' || c.id) FROM channels c WHERE c.owner_id = NEW.id;
    RETURN NULL;
END;
$$;
