-- 0003: campaigns are accepted by staging their recipients (one COPY), then expanded
-- into notifications chunk by chunk by the workers. Additive only.

ALTER TABLE notification_campaigns
    ADD COLUMN content JSONB,                   -- sources and shared variables, frozen at accept
    ADD COLUMN priority INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN send_at TIMESTAMP WITH TIME ZONE,
    ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;

-- Narrow on purpose (text, not jsonb; one index): 100k rows are written in one COPY.
CREATE TABLE notification_campaign_recipients (
    campaign_id UUID NOT NULL,
    seq INTEGER NOT NULL,                       -- position in the accepted list
    user_id UUID NOT NULL,
    recipient TEXT NOT NULL,                    -- the `to` object (JSON)
    variables TEXT,                             -- the recipient's own variables (JSON)
    PRIMARY KEY (campaign_id, seq)
);

-- One row per CHUNK recipients: the unit of expansion (and of recovery by the sweep).
CREATE TABLE notification_campaign_chunks (
    campaign_id UUID NOT NULL,
    chunk INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    claimed_at TIMESTAMP WITH TIME ZONE,
    expanded_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW(),
    PRIMARY KEY (campaign_id, chunk)
);
CREATE INDEX idx_notification_campaign_chunks_pending
    ON notification_campaign_chunks(created_at) WHERE expanded_at IS NULL;
