-- 0001: the spec's 6 tables and 5 views, verbatim (ids default to gen_random_uuid()),
-- followed by the additive columns, indexes and tables the send path needs.

-- ============================================================ the spec's tables

CREATE TABLE notification_templates (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL UNIQUE,
    category VARCHAR(100),                 -- transactional, marketing, system
    channels JSONB DEFAULT '["email"]',    -- supported channels
    subject VARCHAR(500),                  -- email subject (Handlebars)
    body_text TEXT,                        -- plain text body
    body_html TEXT,                        -- HTML body (Handlebars)
    variables JSONB DEFAULT '[]',          -- expected variables
    active BOOLEAN DEFAULT TRUE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX idx_notification_templates_name ON notification_templates(name);
CREATE INDEX idx_notification_templates_category ON notification_templates(category);

CREATE TABLE notification_preferences (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    channel VARCHAR(50) NOT NULL,          -- email, push, sms
    category VARCHAR(100),                 -- transactional, marketing, etc.
    enabled BOOLEAN DEFAULT TRUE,
    frequency VARCHAR(50),                 -- immediate, daily, weekly, disabled
    quiet_hours JSONB,                     -- {start, end, timezone}
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE UNIQUE INDEX idx_notification_preferences_user_channel
    ON notification_preferences(user_id, channel, category);

CREATE TABLE notifications (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    channel VARCHAR(50) NOT NULL,          -- email, push, sms
    template_name VARCHAR(255),
    to_address VARCHAR(500),               -- email, phone, device token
    subject VARCHAR(500),
    body TEXT,
    variables JSONB,
    status VARCHAR(50) NOT NULL,           -- queued, sent, delivered, failed, bounced
    provider VARCHAR(50),                  -- resend, sendgrid, twilio, etc.
    provider_id VARCHAR(255),              -- provider message ID
    error TEXT,
    retry_count INTEGER DEFAULT 0,
    sent_at TIMESTAMP WITH TIME ZONE,
    delivered_at TIMESTAMP WITH TIME ZONE,
    opened_at TIMESTAMP WITH TIME ZONE,
    clicked_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX idx_notifications_user ON notifications(user_id);
CREATE INDEX idx_notifications_status ON notifications(status);
CREATE INDEX idx_notifications_channel ON notifications(channel);
CREATE INDEX idx_notifications_created ON notifications(created_at DESC);

CREATE TABLE notification_queue (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id UUID REFERENCES notifications(id),
    priority INTEGER DEFAULT 0,
    attempts INTEGER DEFAULT 0,
    max_attempts INTEGER DEFAULT 3,
    next_retry_at TIMESTAMP WITH TIME ZONE,
    locked_at TIMESTAMP WITH TIME ZONE,
    locked_by VARCHAR(255),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE INDEX idx_notification_queue_priority ON notification_queue(priority DESC, created_at ASC);
CREATE INDEX idx_notification_queue_retry ON notification_queue(next_retry_at);

CREATE TABLE notification_providers (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(100) NOT NULL,            -- resend, sendgrid, twilio, etc.
    channel VARCHAR(50) NOT NULL,          -- email, push, sms
    priority INTEGER DEFAULT 0,            -- higher = preferred
    config JSONB,                          -- provider-specific config (encrypted)
    enabled BOOLEAN DEFAULT TRUE,
    last_success_at TIMESTAMP WITH TIME ZONE,
    last_failure_at TIMESTAMP WITH TIME ZONE,
    failure_count INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

CREATE TABLE notification_batches (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    category VARCHAR(100),
    interval_seconds INTEGER NOT NULL,
    config JSONB,                          -- {group_by, max_items}
    last_sent_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);

-- ============================================================ the spec's views

CREATE VIEW notification_delivery_rates AS
SELECT
    channel,
    COUNT(*) AS total,
    COUNT(*) FILTER (WHERE status = 'delivered') AS delivered,
    COUNT(*) FILTER (WHERE status = 'failed') AS failed,
    COUNT(*) FILTER (WHERE status = 'bounced') AS bounced,
    ROUND(COUNT(*) FILTER (WHERE status = 'delivered')::DECIMAL / NULLIF(COUNT(*), 0) * 100, 2)
        AS delivery_rate_pct
FROM notifications
GROUP BY channel;

CREATE VIEW notification_engagement AS
SELECT
    template_name,
    COUNT(*) AS total_sent,
    COUNT(opened_at) AS opened,
    COUNT(clicked_at) AS clicked,
    ROUND(COUNT(opened_at)::DECIMAL / NULLIF(COUNT(*), 0) * 100, 2) AS open_rate_pct,
    ROUND(COUNT(clicked_at)::DECIMAL / NULLIF(COUNT(opened_at), 0) * 100, 2) AS click_rate_pct
FROM notifications
WHERE channel = 'email' AND status = 'delivered'
GROUP BY template_name
ORDER BY total_sent DESC;

CREATE VIEW notification_provider_health AS
SELECT
    name,
    channel,
    enabled,
    priority,
    failure_count,
    last_success_at,
    last_failure_at
FROM notification_providers
ORDER BY channel, priority DESC;

CREATE VIEW notification_user_summary AS
SELECT
    user_id,
    COUNT(*) AS total_notifications,
    COUNT(*) FILTER (WHERE channel = 'email') AS email_count,
    COUNT(*) FILTER (WHERE channel = 'push') AS push_count,
    COUNT(*) FILTER (WHERE channel = 'sms') AS sms_count,
    MAX(created_at) AS last_notification_at
FROM notifications
GROUP BY user_id
ORDER BY total_notifications DESC;

CREATE VIEW notification_queue_backlog AS
SELECT
    COUNT(*) AS total_queued,
    COUNT(*) FILTER (WHERE locked_at IS NOT NULL) AS processing,
    COUNT(*) FILTER (WHERE locked_at IS NULL) AS pending,
    MIN(created_at) AS oldest_queued_at
FROM notification_queue
WHERE notification_id IN (
    SELECT id FROM notifications WHERE status = 'queued'
);

-- ============================================================ additive: send path

ALTER TABLE notifications
    ADD COLUMN category VARCHAR(100),
    ADD COLUMN priority INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN idempotency_key VARCHAR(255),
    ADD COLUMN request_hash VARCHAR(64),
    ADD COLUMN dedup_key VARCHAR(80),
    ADD COLUMN scheduled_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    ADD COLUMN metadata JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN recipient JSONB,
    ADD COLUMN body_html TEXT,
    ADD COLUMN campaign_id UUID,
    ADD COLUMN batch_id UUID,
    ADD COLUMN failed_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN bounced_at TIMESTAMP WITH TIME ZONE;

CREATE UNIQUE INDEX idx_notifications_idempotency
    ON notifications(idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The spec's dedup window (per user, template, hour) as a key that carries the window
-- bucket, so the window is configurable and the check costs no extra query.
CREATE UNIQUE INDEX idx_notifications_dedup_key
    ON notifications(dedup_key) WHERE dedup_key IS NOT NULL AND status NOT IN ('failed', 'cancelled');
CREATE INDEX idx_notifications_provider_id ON notifications(provider_id) WHERE provider_id IS NOT NULL;
CREATE INDEX idx_notifications_campaign ON notifications(campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX idx_notifications_batched ON notifications(user_id, category) WHERE status = 'batched';
CREATE INDEX idx_notifications_user_created ON notifications(user_id, created_at DESC);

ALTER TABLE notification_queue
    ADD COLUMN job_id VARCHAR(100),
    ADD COLUMN last_error TEXT,
    ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW();
CREATE UNIQUE INDEX idx_notification_queue_notification ON notification_queue(notification_id);
CREATE INDEX idx_notification_queue_due
    ON notification_queue(priority DESC, next_retry_at) WHERE locked_at IS NULL;

ALTER TABLE notification_preferences
    ADD COLUMN reason TEXT;
CREATE UNIQUE INDEX idx_notification_preferences_unique_nulls
    ON notification_preferences(user_id, channel, category) NULLS NOT DISTINCT;

ALTER TABLE notification_providers
    ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    ADD COLUMN last_error TEXT,
    ADD COLUMN breaker_state VARCHAR(20) NOT NULL DEFAULT 'closed';
CREATE UNIQUE INDEX idx_notification_providers_name_channel
    ON notification_providers(name, channel);

-- Provider events (webhooks), deduplicated by the provider's own event id.
CREATE TABLE notification_events (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id UUID REFERENCES notifications(id) ON DELETE CASCADE,
    provider VARCHAR(50) NOT NULL,
    provider_event_id VARCHAR(255) NOT NULL,
    provider_message_id VARCHAR(255),
    event_type VARCHAR(50) NOT NULL,       -- delivery.succeeded, delivery.failed, bounce, ...
    occurred_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    payload JSONB,
    applied BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE UNIQUE INDEX idx_notification_events_dedup
    ON notification_events(provider, provider_event_id);
CREATE INDEX idx_notification_events_notification ON notification_events(notification_id);
CREATE INDEX idx_notification_events_message
    ON notification_events(provider, provider_message_id) WHERE notification_id IS NULL;

-- The spec's audit log, plus who did it and what.
CREATE TABLE notification_audit_log (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID,
    action VARCHAR(50),  -- send, view, delete, export
    ip_address INET,
    user_agent TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX idx_audit_log_user ON notification_audit_log(user_id);
CREATE INDEX idx_audit_log_created ON notification_audit_log(created_at DESC);
ALTER TABLE notification_audit_log
    ADD COLUMN actor VARCHAR(255),
    ADD COLUMN target_type VARCHAR(50),
    ADD COLUMN target_id VARCHAR(255),
    ADD COLUMN details JSONB;
