-- Imports: a file of events taken in by the API or `hearback import`, its progress, and the rows
-- it could not turn into a new invitation (accepted rows are counted, not listed: their
-- invitations are the record).
CREATE TABLE imports (
    id          TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    format      TEXT NOT NULL CHECK (format IN ('csv', 'jsonl')),
    status      TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    rows        BIGINT NOT NULL DEFAULT 0,
    accepted    BIGINT NOT NULL DEFAULT 0,
    rejected    BIGINT NOT NULL DEFAULT 0,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);

CREATE TABLE import_rejections (
    import_id     TEXT NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line          BIGINT NOT NULL,
    event_id      TEXT,
    reason        TEXT NOT NULL,
    message       TEXT NOT NULL,
    -- The invitation the event already had (duplicate event) or that was recorded declined.
    invitation_id TEXT,
    PRIMARY KEY (import_id, line)
);

-- A quota counts the responses of the period from the answers given in it.
CREATE INDEX answers_answered_at ON answers (answered_at);

-- SMS-pumping guards. When a message went to the provider, and whether hearback started it (an
-- opening, a reminder) rather than answered the customer: a number's texts of the day are the
-- started ones sent since the day began.
ALTER TABLE messages ADD COLUMN sent_at TIMESTAMPTZ;
ALTER TABLE messages ADD COLUMN unprompted BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX messages_contact_sent ON messages (contact_id, sent_at) WHERE unprompted;
-- What each unit spent on texts per day (in dispatch.default_time_zone), kept as sends are
-- recorded so that the daily spend cap is one lookup.
CREATE TABLE unit_daily_spend (
    unit_id     TEXT NOT NULL REFERENCES units (id),
    day         TEXT NOT NULL,
    cost_micros BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (unit_id, day)
);
