-- 0002: digests, campaigns and drip sequences (additive only).

-- ============================================================ digests
-- notification_batches (the spec's table) gets one row per (user, channel, frequency):
-- its interval, its {group_by, max_items} config and when its last digest went out.
ALTER TABLE notification_batches
    ADD COLUMN user_id UUID,
    ADD COLUMN channel VARCHAR(50),
    ADD COLUMN frequency VARCHAR(20),
    ADD COLUMN updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW();
CREATE UNIQUE INDEX idx_notification_batches_user
    ON notification_batches(user_id, channel, frequency) WHERE user_id IS NOT NULL;

-- One row per digest window: the unique key makes a window's digest happen once, whatever
-- the number of workers. notification_id stays NULL until the digest was accepted, so a
-- worker that died between claiming and sending is taken over after a timeout (the send's
-- idempotency key, derived from the same window, keeps that retry exactly-once too).
CREATE TABLE notification_digest_runs (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    channel VARCHAR(50) NOT NULL,
    frequency VARCHAR(20) NOT NULL,           -- daily, weekly
    window_at TIMESTAMP WITH TIME ZONE NOT NULL,
    notification_id UUID,                     -- the digest notification
    item_count INTEGER NOT NULL DEFAULT 0,
    status VARCHAR(20) NOT NULL DEFAULT 'claimed',  -- claimed, sent, suppressed
    claimed_by VARCHAR(255),
    claimed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    done_at TIMESTAMP WITH TIME ZONE,
    UNIQUE (user_id, channel, frequency, window_at)
);
CREATE INDEX idx_notifications_batch ON notifications(batch_id) WHERE batch_id IS NOT NULL;
CREATE INDEX idx_notifications_batched_due
    ON notifications(user_id, channel, created_at) WHERE status = 'batched';

-- ============================================================ campaigns
CREATE TABLE notification_campaigns (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    channel VARCHAR(50) NOT NULL,
    template_name VARCHAR(255),
    category VARCHAR(100),
    status VARCHAR(20) NOT NULL DEFAULT 'accepting',  -- accepting, running, cancelled
    total INTEGER NOT NULL DEFAULT 0,         -- recipients read
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    errors JSONB NOT NULL DEFAULT '[]',       -- the first rejected recipients and why
    created_by VARCHAR(255),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    accepted_at TIMESTAMP WITH TIME ZONE,
    cancelled_at TIMESTAMP WITH TIME ZONE
);
CREATE INDEX idx_notification_campaigns_created ON notification_campaigns(created_at DESC);
-- Progress and cancel use 0001's idx_notifications_campaign; no second index on the
-- campaign rows (every index costs the 100k-row insert).

-- ============================================================ drip sequences
-- Steps are ordinary scheduled notifications carrying metadata.sequence_id / sequence_step.
CREATE TABLE notification_sequences (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name VARCHAR(255) NOT NULL,
    user_id UUID NOT NULL,
    channel VARCHAR(50) NOT NULL,
    status VARCHAR(20) NOT NULL DEFAULT 'active',  -- active, cancelled
    steps INTEGER NOT NULL DEFAULT 0,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    cancelled_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE INDEX idx_notification_sequences_user ON notification_sequences(user_id);
CREATE INDEX idx_notifications_sequence
    ON notifications((metadata->>'sequence_id')) WHERE metadata ? 'sequence_id';
