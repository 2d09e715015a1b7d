DELETE FROM funnel_events WHERE step = 'previewed';
ALTER TABLE funnel_events DROP CONSTRAINT funnel_events_step_check;
ALTER TABLE funnel_events ADD CONSTRAINT funnel_events_step_check
    CHECK (step IN ('denied_visit', 'pass_page', 'checkout_started', 'paid'));
DROP TABLE previews;
ALTER TABLE streams DROP COLUMN preview_seconds;
