-- Sending and conversations (PostgreSQL). Keep in step with migrations/sqlite/20261123000002_sending.sql.
-- Additive only: the previous release keeps running on this schema.

-- The number or sender ID a message uses on our side: the sender of an outbound message, the
-- number the customer wrote to for an inbound one. A reply always leaves from the number the
-- customer talks to.
ALTER TABLE messages ADD COLUMN sender TEXT;
-- Why an outbound message exists: a survey step, or an answer to a keyword. Only the opt-out
-- confirmation may reach a number that has opted out.
ALTER TABLE messages ADD COLUMN purpose TEXT
    CHECK (purpose IN ('survey', 'opt_out_confirmation', 'opt_in_confirmation', 'help'));

-- What a permanent failure said about the number (invalid, landline, unreachable), kept with a
-- status that may arrive before its send is recorded, to flag the contact when it is.
ALTER TABLE message_statuses ADD COLUMN number_status TEXT;

-- One instance at a time sends through a channel, so its rate limit holds across instances.
CREATE TABLE channel_leases (
    channel     TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);

-- Parts of a concatenated SMS that some providers (Vonage) deliver one webhook per part; the
-- message is recorded once every part is here.
CREATE TABLE message_parts (
    channel              TEXT NOT NULL,
    sender               TEXT NOT NULL,
    reference            TEXT NOT NULL,
    part_index           INTEGER NOT NULL CHECK (part_index > 0),
    part_total           INTEGER NOT NULL CHECK (part_total > 1 AND part_index <= part_total),
    provider_message_id  TEXT NOT NULL,
    recipient            TEXT NOT NULL,
    body                 TEXT NOT NULL,
    received_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel, sender, reference, part_index)
);
