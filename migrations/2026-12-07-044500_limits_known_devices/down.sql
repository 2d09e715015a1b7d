DROP TABLE rate_limit_events;
DROP INDEX sign_in_attempts_created_at_idx;
DROP INDEX sign_in_attempts_device_created_at_idx;
ALTER TABLE sign_in_attempts DROP COLUMN device_hash;
DROP TABLE known_devices;
