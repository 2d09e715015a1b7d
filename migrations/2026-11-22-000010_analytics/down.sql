DROP TABLE funnel_events;
DROP INDEX orders_pass_id_paid_at_idx;
ALTER TABLE orders DROP COLUMN paid_at;
DROP INDEX orders_stream_id_idx;
ALTER TABLE orders DROP COLUMN stream_id;
