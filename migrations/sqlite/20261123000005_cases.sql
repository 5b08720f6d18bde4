-- The closed loop: people who handle unhappy customers, their cases and each case's history.

-- People: an agent or manager acts on the cases of their unit and its sub-units; an admin on all.
-- The password hash (argon2, PHC string) is for the web inbox; until then a user acts through an
-- API key issued for them (api_keys.user_id).
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE CHECK (email LIKE '%_@_%'),
    name           TEXT,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'manager', 'agent')),
    unit_id        TEXT REFERENCES units (id),
    password_hash  TEXT,
    created_at     INTEGER NOT NULL,
    disabled_at    INTEGER,
    CHECK (role = 'admin' OR unit_id IS NOT NULL)
);
CREATE INDEX users_unit ON users (unit_id, role);

ALTER TABLE api_keys ADD COLUMN user_id TEXT REFERENCES users (id);

-- A case: an alert about one customer, handled by a person until it is closed. While a case is
-- not closed, the customer's texts that no survey is waiting for go to its thread.
CREATE TABLE cases (
    id                 TEXT PRIMARY KEY,
    contact_id         TEXT NOT NULL REFERENCES contacts (id),
    unit_id            TEXT REFERENCES units (id),
    conversation_id    TEXT REFERENCES conversations (id),
    -- The channel and our number the customer talks to: the thread's texts go from there.
    channel            TEXT NOT NULL,
    sender             TEXT NOT NULL,
    rule_id            TEXT NOT NULL,
    priority           TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status             TEXT NOT NULL CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    outcome            TEXT CHECK (outcome IN ('solved', 'not_solved', 'unreachable', 'no_action_needed')),
    assignee_id        TEXT REFERENCES users (id),
    -- Taken (assigned) by then, or escalated to the unit's parent managers.
    sla_due_at         INTEGER NOT NULL,
    escalated_at       INTEGER,
    -- The recovery question after resolution: asked, then answered yes or no.
    follow_up          TEXT CHECK (follow_up IN ('asked', 'yes', 'no')),
    customer_wrote_at  INTEGER,
    opened_at          INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    resolved_at        INTEGER,
    closed_at          INTEGER,
    -- A case is resolved or closed with an outcome.
    CHECK ((status IN ('open', 'in_progress')) = (outcome IS NULL)),
    CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
-- One case at a time per customer: a later alert joins the case that is not closed.
CREATE UNIQUE INDEX cases_one_active ON cases (contact_id) WHERE status <> 'closed';
CREATE INDEX cases_unit ON cases (unit_id, opened_at);
CREATE INDEX cases_overdue ON cases (sla_due_at) WHERE status = 'open';

-- Every change and every message of a case, in order.
CREATE TABLE case_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     TEXT NOT NULL REFERENCES cases (id),
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('opened', 'alert', 'assigned', 'message_in',
                'message_out', 'escalated', 'resolved', 'follow_up', 'closed')),
    message_id  TEXT REFERENCES messages (id),
    details     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details))
);
CREATE INDEX case_events_case ON case_events (case_id, id);

-- A text of a case's thread (the customer's, or an agent's: then `purpose` is NULL).
ALTER TABLE messages ADD COLUMN case_id TEXT REFERENCES cases (id);
CREATE INDEX messages_case ON messages (case_id, created_at) WHERE case_id IS NOT NULL;
