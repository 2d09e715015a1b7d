-- Open chat streams re-check access when something takes it away, not on a
-- timer (chat::RECHECK_BACKSTOP is only the backstop). Besides bans, team
-- changes, grants revoked or shortened and suspensions (000007, operators):

-- A channel hidden or shown, or one of its streams turned between public and
-- pass, changes who may read for everyone in the channel ('c:<channel>').
CREATE FUNCTION stagepass_chat_notify_channel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_chat', 'c:' || NEW.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER channels_hidden_chat_notify AFTER UPDATE OF hidden_at ON channels
    FOR EACH ROW WHEN (OLD.hidden_at IS DISTINCT FROM NEW.hidden_at)
    EXECUTE FUNCTION stagepass_chat_notify_channel();

CREATE FUNCTION stagepass_chat_notify_stream_channel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_chat', 'c:' || NEW.channel_id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER streams_access_chat_notify AFTER UPDATE OF access ON streams
    FOR EACH ROW WHEN (OLD.access IS DISTINCT FROM NEW.access)
    EXECUTE FUNCTION stagepass_chat_notify_stream_channel();

-- A grant deleted ends what it gave, as a revocation does.
CREATE TRIGGER access_grants_chat_notify_delete AFTER DELETE ON access_grants
    FOR EACH ROW EXECUTE FUNCTION stagepass_chat_notify_user();
