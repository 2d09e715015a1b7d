DROP TABLE streams;
DROP TABLE channel_members;
DROP TABLE channels;
