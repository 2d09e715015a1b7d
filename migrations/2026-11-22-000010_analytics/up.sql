-- Creator analytics: the pass-buying funnel. Viewers over time, watch time
-- and peak come from `presence`, chat activity from `chat_messages`, sales
-- and revenue from `orders`.

-- The stream whose page a checkout started from (NULL: the channel's pass
-- page), so sales of channel-wide passes count towards the stream that sold
-- them.
ALTER TABLE orders ADD COLUMN stream_id BIGINT NULL REFERENCES streams (id) ON DELETE SET NULL;
CREATE INDEX orders_stream_id_idx ON orders (stream_id) WHERE stream_id IS NOT NULL;
-- When the payment completed (set in the transaction that marks the order
-- paid; a refund keeps it): revenue per day for a channel.
ALTER TABLE orders ADD COLUMN paid_at TIMESTAMPTZ NULL;
UPDATE orders SET paid_at = updated_at WHERE status IN ('paid', 'refunded');
CREATE INDEX orders_pass_id_paid_at_idx ON orders (pass_id, paid_at) WHERE paid_at IS NOT NULL;

-- Each step of the funnel, once per visitor: a watch-page visit by someone
-- without access, the pass page, checkout started, paid.
CREATE TABLE funnel_events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    stream_id  BIGINT NULL REFERENCES streams (id) ON DELETE CASCADE,
    step       TEXT NOT NULL,
    -- 'u:{user id}' for a signed-in visitor, 'a:{random id}' from an
    -- anonymous visitor's cookie; never an IP address.
    visitor    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT funnel_events_step_check
        CHECK (step IN ('denied_visit', 'pass_page', 'checkout_started', 'paid')),
    CONSTRAINT funnel_events_visitor_check CHECK (visitor ~ '^[ua]:[A-Za-z0-9_-]{1,64}$'),
    -- Refreshing a page does not count twice.
    CONSTRAINT funnel_events_once_key
        UNIQUE NULLS NOT DISTINCT (channel_id, stream_id, step, visitor)
);
CREATE INDEX funnel_events_stream_id_idx ON funnel_events (stream_id) WHERE stream_id IS NOT NULL;
