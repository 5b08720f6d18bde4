-- Privacy (SQLite): erasure and keyed blocking. Keep in step with
-- migrations/postgres/20261123000007_privacy.sql. Additive only.

-- When a contact was erased: its phone is then `+erased-<id>` (no E.164 number can equal it),
-- its texts and variables are gone, its scores stay for the aggregates.
ALTER TABLE contacts ADD COLUMN erased_at INTEGER;

-- Numbers that stay opted out after their contact was erased, known only by their
-- HMAC-SHA256 under a key kept outside the database (`[privacy] hash_key` or its key file): the
-- database alone cannot tell which numbers they are, not even by trying every number.
CREATE TABLE blocked_numbers (
    phone_hmac  BLOB PRIMARY KEY CHECK (length(phone_hmac) = 32),
    blocked_at  INTEGER NOT NULL
);

-- A customer's card and erasure find their rows by contact: without these, each of them (and
-- each contact a retention run checks for recent activity) read the whole table. Each costs a
-- little on every insert (messages is the busiest table; not yet measured against the runs of
-- docs/PERFORMANCE.md).
CREATE INDEX messages_contact ON messages (contact_id, created_at);
CREATE INDEX conversations_contact ON conversations (contact_id);
CREATE INDEX cases_contact ON cases (contact_id);
CREATE INDEX import_rejections_invitation ON import_rejections (invitation_id)
    WHERE invitation_id IS NOT NULL;
