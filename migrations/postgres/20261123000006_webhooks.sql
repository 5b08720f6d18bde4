-- CRM webhooks: endpoints, one delivery per event per endpoint, and every attempt.
-- Keep in step with migrations/sqlite/20261123000006_webhooks.sql.

-- Where events go. `secret` is the Standard Webhooks signing secret (`whsec_…`): it signs every
-- request, so it is kept as is. `event_types` is a JSON array; empty means every type.
CREATE TABLE webhook_endpoints (
    id           TEXT PRIMARY KEY,
    -- Endpoints from the configuration are known by their name there; API ones have none.
    name         TEXT UNIQUE,
    url          TEXT NOT NULL CHECK (url LIKE 'http://%' OR url LIKE 'https://%'),
    secret       TEXT NOT NULL CHECK (secret LIKE 'whsec_%'),
    event_types  JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(event_types) = 'array'),
    source       TEXT NOT NULL CHECK (source IN ('config', 'api')),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    -- A configured endpoint removed from the configuration is disabled, not deleted: its
    -- deliveries stay listed.
    disabled_at  TIMESTAMPTZ,
    CHECK (source = 'api' OR name IS NOT NULL)
);

-- One row per event per endpoint. `id` grows in the order events were handed out, which is the
-- order one contact's events reach an endpoint: only the oldest pending delivery of a
-- (endpoint, contact) has a job; the next one's job is queued when it is delivered or dead.
CREATE TABLE webhook_deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    event_seq        BIGINT NOT NULL REFERENCES outbox (seq),
    contact_id       TEXT,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Bumped by each manual retry or replay, so that its job is a new one.
    replays          INTEGER NOT NULL DEFAULT 0 CHECK (replays >= 0),
    next_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    delivered_at     TIMESTAMPTZ,
    UNIQUE (endpoint_id, event_seq),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);
CREATE INDEX webhook_deliveries_chain
    ON webhook_deliveries (endpoint_id, contact_id, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint_state ON webhook_deliveries (endpoint_id, state, id);
CREATE INDEX webhook_deliveries_contact ON webhook_deliveries (contact_id);

-- Every request made for a delivery, with what came back.
CREATE TABLE webhook_attempts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id   BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempted_at  TIMESTAMPTZ NOT NULL,
    -- The HTTP status, or NULL when no answer came (refused address, timeout, reset).
    status_code   INTEGER,
    error         TEXT,
    duration_ms   BIGINT NOT NULL CHECK (duration_ms >= 0)
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);

-- Events not yet handed to the endpoints. Existing events predate every endpoint.
ALTER TABLE outbox ADD COLUMN dispatched BOOLEAN NOT NULL DEFAULT false;
UPDATE outbox SET dispatched = true;
CREATE INDEX outbox_undispatched ON outbox (seq) WHERE NOT dispatched;
