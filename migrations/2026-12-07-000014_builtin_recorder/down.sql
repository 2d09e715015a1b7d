DROP TABLE recording_parts;
DROP INDEX recordings_builtin_unfinished_idx;
ALTER TABLE recordings
    DROP CONSTRAINT recordings_backend_check,
    DROP COLUMN lease_until,
    DROP COLUMN lease_owner,
    DROP COLUMN backend;
