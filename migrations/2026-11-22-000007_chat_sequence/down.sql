DROP TRIGGER access_grants_chat_notify ON access_grants;
DROP TRIGGER channel_members_chat_notify ON channel_members;
DROP TRIGGER bans_chat_notify ON bans;
DROP FUNCTION stagepass_chat_notify_user();

DROP INDEX chat_messages_held_idx;
CREATE INDEX chat_messages_stream_id_id_idx ON chat_messages (stream_id, id);
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_deleted_seq_check;
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_stream_id_deleted_seq_key;
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_stream_id_seq_key;
ALTER TABLE chat_messages DROP COLUMN deleted_seq;
ALTER TABLE chat_messages DROP COLUMN seq;

ALTER TABLE streams DROP CONSTRAINT streams_chat_delay_seconds_max_check;
ALTER TABLE streams DROP CONSTRAINT streams_chat_slow_mode_seconds_max_check;
ALTER TABLE streams DROP CONSTRAINT streams_chat_seq_check;
ALTER TABLE streams DROP COLUMN chat_seq;
