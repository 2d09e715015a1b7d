-- Flood limits (issue 12): known devices for sign-in, and one log of counted
-- actions for every other per-address or per-account limit.

-- OWASP "device cookies": a browser that signed in to an account gets a random
-- token in a cookie; its SHA-256 is kept here, per account it signed in to.
-- A known device is not held by the limits on failures from everywhere, so a
-- stranger's failures never lock the owner out of a browser they used before.
CREATE TABLE known_devices (
    token_hash   TEXT NOT NULL,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (token_hash, user_id)
);
-- The cleanup job forgets devices unused for a year.
CREATE INDEX known_devices_last_used_at_idx ON known_devices (last_used_at);

-- The device cookie (its hash) an attempt came with, if any: a known device
-- that fails too often is no longer trusted (its own failures, nobody else's).
ALTER TABLE sign_in_attempts ADD COLUMN device_hash TEXT NULL;
CREATE INDEX sign_in_attempts_device_created_at_idx
    ON sign_in_attempts (device_hash, created_at) WHERE device_hash IS NOT NULL;
-- The cleanup job deletes by age.
CREATE INDEX sign_in_attempts_created_at_idx ON sign_in_attempts (created_at);

-- Counted actions of the other flood limits (`src/limits.rs`): sign-ups per
-- address, failed code redemptions per address, ... `subject` is an address
-- or a user id, as the action says. Rows older than a day are deleted.
CREATE TABLE rate_limit_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX rate_limit_events_action_subject_created_at_idx
    ON rate_limit_events (action, subject, created_at);
CREATE INDEX rate_limit_events_created_at_idx ON rate_limit_events (created_at);
