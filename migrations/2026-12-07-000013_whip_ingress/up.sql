-- OBS over WHIP straight into livekit-server: the stream key is a LiveKit token
-- for the stream's room whose identity, `obs-{stream}-{generation}`, is kept in
-- ingress_id. Every change of a stream's OBS key (create, reset, delete) bumps
-- the generation, so a key once replaced never names the current encoder
-- again: its participant is refused on participant_joined. It also makes each
-- change conditional on the generation it read (no lost update between two tabs).
ALTER TABLE streams ADD COLUMN ingress_generation INTEGER NOT NULL DEFAULT 0;
