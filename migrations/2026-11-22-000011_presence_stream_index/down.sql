DROP INDEX presence_stream_id_idx;
