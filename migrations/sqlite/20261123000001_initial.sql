-- hearback initial schema (SQLite). Keep in step with migrations/postgres/20261123000001_initial.sql.
-- Instants are integer milliseconds since the Unix epoch (UTC). JSON is stored as text.

-- The organisation tree: company → region → store, any depth.
CREATE TABLE units (
    id          TEXT PRIMARY KEY,
    code        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL CHECK (length(name) > 0),
    parent_id   TEXT REFERENCES units (id),
    created_at  INTEGER NOT NULL,
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX units_parent ON units (parent_id);

-- One row per customer phone number (E.164).
CREATE TABLE contacts (
    id             TEXT PRIMARY KEY,
    phone          TEXT NOT NULL UNIQUE CHECK (phone LIKE '+%'),
    locale         TEXT,
    time_zone      TEXT,
    number_status  TEXT NOT NULL DEFAULT 'ok'
                   CHECK (number_status IN ('ok', 'invalid', 'landline', 'unreachable')),
    opted_out_at   INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- Opt-out / opt-in history of a contact: never overwritten, only appended.
CREATE TABLE contact_consents (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    contact_id  TEXT NOT NULL REFERENCES contacts (id),
    change      TEXT NOT NULL CHECK (change IN ('opted_out', 'opted_in')),
    source      TEXT NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX contact_consents_contact ON contact_consents (contact_id, at);

-- API keys: the secret is never stored, only its SHA-256.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL CHECK (length(name) > 0),
    secret_hash  BLOB NOT NULL CHECK (length(secret_hash) = 32),
    unit_id      TEXT REFERENCES units (id),
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;

-- A request to survey one customer about one event. The same event from the same source is one
-- invitation, whatever the number of calls.
CREATE TABLE invitations (
    id             TEXT PRIMARY KEY,
    source         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    payload_hash   BLOB NOT NULL,
    flow_id        TEXT NOT NULL,
    contact_id     TEXT NOT NULL REFERENCES contacts (id),
    unit_id        TEXT REFERENCES units (id),
    channel        TEXT,
    locale         TEXT,
    variables      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(variables)),
    event_at       INTEGER,
    status         TEXT NOT NULL
                   CHECK (status IN ('scheduled', 'held', 'sent', 'failed', 'declined', 'cancelled')),
    status_reason  TEXT,
    send_at        INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (source, event_id)
);
CREATE INDEX invitations_contact ON invitations (contact_id, created_at);
CREATE INDEX invitations_status ON invitations (status, send_at);

-- The engine's state for one invitation. At most one open conversation per (contact, channel,
-- sender); `version` guards optimistic updates.
CREATE TABLE conversations (
    id             TEXT PRIMARY KEY,
    invitation_id  TEXT NOT NULL UNIQUE REFERENCES invitations (id),
    contact_id     TEXT NOT NULL REFERENCES contacts (id),
    channel        TEXT NOT NULL,
    sender         TEXT NOT NULL,
    flow_id        TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (json_valid(state)),
    status         TEXT NOT NULL CHECK (status IN ('open', 'completed', 'expired')),
    version        INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    started_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    closed_at      INTEGER,
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE UNIQUE INDEX conversations_one_open
    ON conversations (contact_id, channel, sender) WHERE status = 'open';

-- Inbound and outbound SMS. A provider retry of an inbound message hits the unique index.
CREATE TABLE messages (
    id                   TEXT PRIMARY KEY,
    conversation_id      TEXT REFERENCES conversations (id),
    contact_id           TEXT REFERENCES contacts (id),
    direction            TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel              TEXT NOT NULL,
    provider_message_id  TEXT,
    body                 TEXT NOT NULL,
    encoding             TEXT CHECK (encoding IN ('GSM-7', 'UCS-2')),
    segments             INTEGER CHECK (segments > 0),
    cost_micros          INTEGER CHECK (cost_micros >= 0),
    status               TEXT NOT NULL CHECK (status IN ('received', 'queued', 'sending', 'sent',
                         'delivered', 'failed_temporary', 'failed_permanent', 'unknown')),
    error_code           TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX messages_provider_id
    ON messages (channel, direction, provider_message_id) WHERE provider_message_id IS NOT NULL;
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);

-- Status callbacks, one row per (message, status). A callback may arrive before its send is
-- recorded: it is kept by provider id and applied when the message appears.
CREATE TABLE message_statuses (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    channel              TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    message_id           TEXT REFERENCES messages (id),
    status               TEXT NOT NULL,
    error_code           TEXT,
    received_at          INTEGER NOT NULL,
    UNIQUE (channel, provider_message_id, status)
);

-- One answer per question of a conversation.
CREATE TABLE answers (
    id               TEXT PRIMARY KEY,
    conversation_id  TEXT NOT NULL REFERENCES conversations (id),
    question_id      TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('nps', 'csat', 'ces', 'yesno', 'choice', 'text')),
    score            INTEGER CHECK (score BETWEEN 0 AND 10),
    choice           TEXT,
    text             TEXT,
    message_id       TEXT REFERENCES messages (id),
    answered_at      INTEGER NOT NULL,
    UNIQUE (conversation_id, question_id)
);

-- Durable work. A running job belongs to its lease owner until the lease expires.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    kind              TEXT NOT NULL,
    payload           TEXT NOT NULL CHECK (json_valid(payload)),
    unique_key        TEXT UNIQUE,
    state             TEXT NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'dead')),
    run_at            INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      INTEGER NOT NULL CHECK (max_attempts > 0),
    lease_owner       TEXT,
    lease_expires_at  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
);
CREATE INDEX jobs_due ON jobs (state, run_at);

-- Every event of the public contract, written in the transaction of the change that caused it.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id     TEXT NOT NULL UNIQUE,
    event_type   TEXT NOT NULL CHECK (event_type IN (
                     'invitation.sent', 'invitation.failed', 'response.answered',
                     'response.completed', 'response.expired', 'alert.raised', 'case.opened',
                     'case.assigned', 'case.message', 'case.escalated', 'case.resolved',
                     'case.closed', 'contact.opted_out', 'contact.opted_in', 'contact.erased')),
    version      INTEGER NOT NULL CHECK (version > 0),
    contact_id   TEXT REFERENCES contacts (id),
    occurred_at  INTEGER NOT NULL,
    payload      TEXT NOT NULL CHECK (json_valid(payload))
);
CREATE INDEX outbox_contact ON outbox (contact_id, seq);

-- Who did what to which record, when.
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT,
    details      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);
