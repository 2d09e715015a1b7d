-- The built-in recorder (src/recorder/): who records a recording, and which
-- app instance holds it. One instance records a stream at a time: it holds a
-- lease it renews every few seconds; when an instance dies its lease lapses
-- and another takes the recording over.
ALTER TABLE recordings
    ADD COLUMN backend TEXT NOT NULL DEFAULT 'egress',
    ADD COLUMN lease_owner UUID NULL,
    ADD COLUMN lease_until TIMESTAMPTZ NULL,
    ADD CONSTRAINT recordings_backend_check CHECK (backend IN ('egress', 'builtin'));

-- The recorders' supervisor looks for built-in recordings without a live lease.
CREATE INDEX recordings_builtin_unfinished_idx ON recordings (id)
    WHERE backend = 'builtin' AND status IN ('starting', 'active', 'ending');

-- A built-in recording is one file per recorder session: usually one, more
-- when an instance took a recording over from one that died. Replays play
-- them in order. A part being written keeps its multipart upload's id, so
-- that whoever takes over can complete what was already uploaded.
CREATE TABLE recording_parts (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- CASCADE: deleting a recording deletes its parts' objects first
    -- (recording::delete), then the row and these with it.
    recording_id BIGINT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    part_no      INT NOT NULL,
    object_key   TEXT NOT NULL UNIQUE,
    upload_id    TEXT NULL,
    status       TEXT NOT NULL DEFAULT 'writing',
    duration_ms  BIGINT NULL,
    size_bytes   BIGINT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT recording_parts_status_check CHECK (status IN ('writing', 'complete', 'lost')),
    CONSTRAINT recording_parts_part_no_check CHECK (part_no >= 1),
    CONSTRAINT recording_parts_sizes_check
        CHECK ((duration_ms IS NULL OR duration_ms >= 0) AND (size_bytes IS NULL OR size_bytes >= 0)),
    CONSTRAINT recording_parts_recording_part_key UNIQUE (recording_id, part_no)
);
