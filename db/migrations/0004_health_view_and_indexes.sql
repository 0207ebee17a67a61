-- 0004: the provider-health view shows the breaker; a redundant index goes.

-- idx_notifications_user_created duplicated the spec's idx_notifications_user for every
-- query the service runs, and each index costs every insert on the hot path.
DROP INDEX IF EXISTS idx_notifications_user_created;

-- The spec's provider-health view, with the circuit breaker's state appended (columns can
-- only be added at the end of a view; the spec's columns stay as they are).
CREATE OR REPLACE VIEW notification_provider_health AS
SELECT
    name,
    channel,
    enabled,
    priority,
    failure_count,
    last_success_at,
    last_failure_at,
    breaker_state
FROM notification_providers
ORDER BY channel, priority DESC;
