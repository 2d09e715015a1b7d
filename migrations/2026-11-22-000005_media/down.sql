DROP TABLE livekit_events;
DROP TABLE presence;
DROP TABLE recordings;
