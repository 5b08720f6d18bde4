-- Response quotas counted from an index (PostgreSQL). Keep in step with
-- migrations/sqlite/20261123000008_quota.sql. Additive only.

-- A response is a conversation with an answer; it counts in the period of its first answer. The
-- unit is the invitation's, copied so that a quota's count is one range of one index, read no
-- further than the quota (counted from the period's answers, it cost what they did: 8 ms per
-- invitation with 9 000 answers in the month, growing with them).
-- During a rolling upgrade, conversations and answers written by instances of the previous
-- release leave both columns empty, and quotas do not count those responses: upgrade every
-- instance before relying on a quota that is nearly reached.
ALTER TABLE conversations ADD COLUMN unit_id TEXT REFERENCES units (id);
ALTER TABLE conversations ADD COLUMN first_answered_at TIMESTAMPTZ;

UPDATE conversations c SET unit_id = i.unit_id FROM invitations i
    WHERE i.id = c.invitation_id AND i.unit_id IS NOT NULL;
UPDATE conversations c SET first_answered_at = a.first
    FROM (SELECT conversation_id, MIN(answered_at) AS first FROM answers GROUP BY conversation_id) a
    WHERE a.conversation_id = c.id;

CREATE INDEX conversations_responses ON conversations (flow_id, unit_id, first_answered_at)
    WHERE first_answered_at IS NOT NULL;
