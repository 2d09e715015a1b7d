-- Analytics read a stream's whole presence history, closed sessions included
-- (presence_open_idx only covers open ones): without this index every
-- stream's or channel's figures scanned the whole table. It also serves the
-- stream_id foreign key (ON DELETE CASCADE).
CREATE INDEX presence_stream_id_idx ON presence (stream_id);
