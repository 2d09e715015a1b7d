-- Selling access: passes, the grants they produce, orders (money), redeem
-- codes and their redemptions.
--
-- ON DELETE policy here: rows that record money (orders) RESTRICT the deletion
-- of what they point at, so a user, pass or channel that has been paid for can
-- never vanish together with its payment history. Everything else cascades
-- from its owner, or is set to NULL where the row must outlive the reference.

CREATE TABLE access_passes (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Passes belong to the channel. A pass that was ever ordered cannot be
    -- deleted (orders.pass_id RESTRICT): it is archived instead.
    channel_id       BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- Set iff scope = 'stream'. A stream-scoped pass goes with its stream
    -- (again: unless it was sold).
    stream_id        BIGINT NULL REFERENCES streams (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    price_cents      BIGINT NOT NULL,
    -- ISO 4217, upper case ("EUR"); lower-case it for Stripe.
    currency         TEXT NOT NULL,
    scope            TEXT NOT NULL,
    -- Exactly one of: a duration counted from purchase, or a fixed window.
    duration_seconds INTEGER NULL,
    window_starts_at TIMESTAMPTZ NULL,
    window_ends_at   TIMESTAMPTZ NULL,
    includes_replays BOOLEAN NOT NULL DEFAULT false,
    -- NULL = on sale. Archived passes are no longer sold; grants already made
    -- from them stay valid.
    archived_at      TIMESTAMPTZ NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT access_passes_name_check
        CHECK (length(btrim(name)) > 0 AND length(name) <= 100),
    CONSTRAINT access_passes_price_cents_check CHECK (price_cents >= 0),
    CONSTRAINT access_passes_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT access_passes_scope_check CHECK (scope IN ('stream', 'channel')),
    CONSTRAINT access_passes_scope_stream_check
        CHECK ((scope = 'stream') = (stream_id IS NOT NULL)),
    CONSTRAINT access_passes_duration_seconds_check
        CHECK (duration_seconds IS NULL OR duration_seconds > 0),
    CONSTRAINT access_passes_window_check
        CHECK ((window_starts_at IS NULL) = (window_ends_at IS NULL)
               AND (window_starts_at IS NULL OR window_starts_at < window_ends_at)),
    CONSTRAINT access_passes_duration_xor_window_check
        CHECK ((duration_seconds IS NOT NULL) <> (window_starts_at IS NOT NULL))
);
-- A stream-scoped pass or grant must name a stream (and a grant a pass) of
-- its own channel, so a check by channel_id can be trusted. Enforced by a
-- trigger rather than composite foreign keys because diesel print-schema
-- drops the joinable! of any table pair linked by more than one foreign key.
CREATE FUNCTION stagepass_check_same_channel() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.stream_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM streams WHERE id = NEW.stream_id AND channel_id = NEW.channel_id
    ) THEN
        RAISE EXCEPTION '%: stream % is not in channel %', TG_TABLE_NAME, NEW.stream_id, NEW.channel_id
            USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_same_channel_check';
    END IF;
    IF TG_TABLE_NAME = 'access_grants' THEN
        IF NEW.pass_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM access_passes WHERE id = NEW.pass_id AND channel_id = NEW.channel_id
        ) THEN
            RAISE EXCEPTION '%: pass % is not of channel %', TG_TABLE_NAME, NEW.pass_id, NEW.channel_id
                USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_same_channel_check';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER access_passes_same_channel BEFORE INSERT OR UPDATE OF channel_id, stream_id
    ON access_passes FOR EACH ROW EXECUTE FUNCTION stagepass_check_same_channel();

CREATE INDEX access_passes_channel_id_idx ON access_passes (channel_id);
CREATE INDEX access_passes_stream_id_idx ON access_passes (stream_id) WHERE stream_id IS NOT NULL;

CREATE TRIGGER access_passes_set_updated_at BEFORE UPDATE ON access_passes
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

-- The right to watch. Active iff
--   revoked_at IS NULL AND starts_at <= now() AND now() < expires_at
-- evaluated in SQL at the moment of the check.
CREATE TABLE access_grants (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel_id       BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    -- NULL = channel-wide grant; else the one stream it covers.
    stream_id        BIGINT NULL REFERENCES streams (id) ON DELETE CASCADE,
    -- The pass it came from (NULL for comps without a pass). SET NULL: the
    -- grant outlives a deleted (never sold) pass.
    pass_id          BIGINT NULL REFERENCES access_passes (id) ON DELETE SET NULL,
    source           TEXT NOT NULL,
    -- Snapshot of the pass's includes_replays at grant time (editing a pass
    -- later does not change what was bought; comps choose it themselves).
    includes_replays BOOLEAN NOT NULL DEFAULT false,
    starts_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL,
    revoked_at       TIMESTAMPTZ NULL,
    revoked_reason   TEXT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT access_grants_source_check CHECK (source IN ('purchase', 'code', 'comp')),
    CONSTRAINT access_grants_window_check CHECK (starts_at < expires_at),
    CONSTRAINT access_grants_revoked_reason_check
        CHECK (revoked_reason IS NULL OR revoked_at IS NOT NULL)
);
-- Hot paths of the access rule: active grants of a user for a channel
-- (channel-wide grants, and all grants of the channel) and for a stream.
CREATE INDEX access_grants_user_channel_active_idx
    ON access_grants (user_id, channel_id, expires_at) WHERE revoked_at IS NULL;
CREATE INDEX access_grants_user_stream_active_idx
    ON access_grants (user_id, stream_id, expires_at)
    WHERE revoked_at IS NULL AND stream_id IS NOT NULL;
-- The expiry enforcer: next grants to end.
CREATE INDEX access_grants_expires_at_active_idx
    ON access_grants (expires_at) WHERE revoked_at IS NULL;
-- Owner's grants list; FK look-ups for cascades.
CREATE INDEX access_grants_channel_id_created_at_idx ON access_grants (channel_id, created_at DESC);
CREATE INDEX access_grants_stream_id_idx ON access_grants (stream_id) WHERE stream_id IS NOT NULL;
CREATE INDEX access_grants_pass_id_idx ON access_grants (pass_id) WHERE pass_id IS NOT NULL;

CREATE TRIGGER access_grants_same_channel BEFORE INSERT OR UPDATE OF channel_id, stream_id, pass_id
    ON access_grants FOR EACH ROW EXECUTE FUNCTION stagepass_check_same_channel();

CREATE TRIGGER access_grants_set_updated_at BEFORE UPDATE ON access_grants
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

CREATE TABLE orders (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- RESTRICT: an order is a money record; the buyer's account and the pass
    -- sold cannot be deleted out from under it.
    user_id              BIGINT NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    pass_id              BIGINT NOT NULL REFERENCES access_passes (id) ON DELETE RESTRICT,
    amount_cents         BIGINT NOT NULL,
    currency             TEXT NOT NULL,
    provider             TEXT NOT NULL,
    -- The provider's checkout reference (Stripe Checkout Session id). NULL
    -- until known. UNIQUE: a replayed webhook finds the same order and never
    -- creates a second grant.
    provider_ref         TEXT NULL UNIQUE,
    -- The provider's payment reference (Stripe PaymentIntent id), learnt at
    -- completion; refunds (charge.refunded) are matched by it.
    provider_payment_ref TEXT NULL UNIQUE,
    status               TEXT NOT NULL DEFAULT 'pending',
    -- The grant created in the same transaction that marks the order paid.
    -- SET NULL: the order (money) outlives the grant row.
    grant_id             BIGINT NULL UNIQUE REFERENCES access_grants (id) ON DELETE SET NULL,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT orders_amount_cents_check CHECK (amount_cents >= 0),
    CONSTRAINT orders_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT orders_provider_check CHECK (provider IN ('stripe', 'dev')),
    CONSTRAINT orders_status_check
        CHECK (status IN ('pending', 'paid', 'failed', 'refunded', 'canceled'))
);
-- "My passes" purchase history; FK look-up for pass.
CREATE INDEX orders_user_id_created_at_idx ON orders (user_id, created_at DESC);
CREATE INDEX orders_pass_id_idx ON orders (pass_id);

CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION stagepass_set_updated_at();

CREATE TABLE redeem_codes (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Codes are part of their pass.
    pass_id    BIGINT NOT NULL REFERENCES access_passes (id) ON DELETE CASCADE,
    code       TEXT NOT NULL UNIQUE,
    max_uses   INTEGER NOT NULL DEFAULT 1,
    -- Redeem atomically with
    --   UPDATE redeem_codes SET uses = uses + 1
    --   WHERE id = $1 AND uses < max_uses AND (expires_at IS NULL OR now() < expires_at)
    -- the CHECK below is the backstop.
    uses       INTEGER NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT redeem_codes_code_check
        CHECK (length(code) > 0 AND length(code) <= 64 AND code = btrim(code)),
    CONSTRAINT redeem_codes_max_uses_check CHECK (max_uses > 0),
    CONSTRAINT redeem_codes_uses_check CHECK (uses >= 0 AND uses <= max_uses)
);
CREATE INDEX redeem_codes_pass_id_idx ON redeem_codes (pass_id);

CREATE TABLE redemptions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code_id    BIGINT NOT NULL REFERENCES redeem_codes (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- SET NULL: the record that the code was used stays even if the grant row goes.
    grant_id   BIGINT NULL UNIQUE REFERENCES access_grants (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- One redemption of a given code per user (multi-use codes are for many people).
    CONSTRAINT redemptions_code_id_user_id_key UNIQUE (code_id, user_id)
);
CREATE INDEX redemptions_user_id_idx ON redemptions (user_id);
