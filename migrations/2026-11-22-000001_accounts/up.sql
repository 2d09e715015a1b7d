-- Accounts: users, server-side sessions (tower-sessions store) and the
-- sign-in attempt log used for rate limiting.

-- Shared trigger function: bump updated_at on every UPDATE that changes the
-- row, unless the statement set updated_at itself. Used by every table with an
-- updated_at column (this and later migrations attach it).
CREATE FUNCTION stagepass_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW IS DISTINCT FROM OLD AND NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_check
        CHECK (length(btrim(email)) > 0 AND position('@' IN email) > 0),
    CONSTRAINT users_display_name_check
        CHECK (length(btrim(display_name)) > 0 AND length(btrim(display_name)) <= 80)
);
-- Emails are unique regardless of letter case ("Ann@x.io" and "ann@X.IO" are
-- one account). Look-ups must use lower(email) to hit this index.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TRIGGER users_set_updated_at BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    data       JSONB NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    -- A session belongs to its user: deleting the user signs them out everywhere.
    user_id    BIGINT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The cleanup task deletes WHERE expires_at < now().
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
-- "Sign out everywhere" / cycle sessions at password change.
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- No foreign key to users on purpose: attempts are recorded for emails that
-- have no account too, and they must survive account deletion for the
-- rate limiter to mean anything.
CREATE TABLE sign_in_attempts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      TEXT NOT NULL,
    ip         TEXT NOT NULL,
    succeeded  BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Per-account and per-IP failure counts over a recent window.
CREATE INDEX sign_in_attempts_email_created_at_idx ON sign_in_attempts (lower(email), created_at);
CREATE INDEX sign_in_attempts_ip_created_at_idx ON sign_in_attempts (ip, created_at);
