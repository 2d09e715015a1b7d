CREATE OR REPLACE FUNCTION stagepass_notify_user_suspended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stagepass_access_changed', '');
    PERFORM pg_notify('stagepass_chat', 's:' || NEW.id);
    RETURN NULL;
END;
$$;
DROP TRIGGER access_grants_chat_notify_delete ON access_grants;
DROP TRIGGER streams_deleted_chat_notify ON streams;
DROP TRIGGER streams_access_chat_notify ON streams;
DROP FUNCTION stagepass_chat_notify_stream_channel();
DROP TRIGGER channels_hidden_chat_notify ON channels;
DROP FUNCTION stagepass_chat_notify_channel();
