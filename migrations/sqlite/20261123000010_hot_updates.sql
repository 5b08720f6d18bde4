-- Keep in step with migrations/postgres/20261123000010_hot_updates.sql (which also leaves room
-- in PostgreSQL's pages for HOT updates; SQLite has no such setting).

-- A text's `sending` mark sets `sent_at`: out of the index, the mark no longer rewrites an index
-- entry. The daily cap reads a number's unprompted texts, a handful, and checks `sent_at` on each.
CREATE INDEX IF NOT EXISTS messages_contact_unprompted ON messages (contact_id) WHERE unprompted;
DROP INDEX messages_contact_sent;
