-- "Had a pass before" (the access rule's "your pass has ended", checked for a
-- viewer without an active grant) looks at revoked and expired grants too,
-- which the partial indexes on active grants do not cover: without this it
-- scanned the channel's grants (found by `make bench`).
CREATE INDEX access_grants_user_id_channel_id_idx ON access_grants (user_id, channel_id);
