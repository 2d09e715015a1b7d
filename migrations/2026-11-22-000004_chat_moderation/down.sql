DROP TABLE audit_log;
DROP TABLE bans;
DROP TABLE chat_messages;
