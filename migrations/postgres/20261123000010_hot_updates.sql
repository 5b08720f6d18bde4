-- Room for PostgreSQL's HOT updates on the tables a reply updates. Keep the index change in
-- step with migrations/sqlite/20261123000010_hot_updates.sql.
--
-- An update is HOT (heap-only: no new index entry, and nothing left for the next lookup to walk
-- past) when it changes no indexed column and the row's page has room for the new version.
-- After a load run, none of the 24 000 updates of `messages` and 1 285 of the 9 000 of
-- `conversations` were HOT (docs/PERFORMANCE.md, "Room for HOT updates").

-- A text's `sending` mark sets `sent_at`, which this index held, so no mark was HOT. The daily
-- cap reads a number's unprompted texts, a handful, and checks `sent_at` on each row instead.
-- Building the index blocks writes to `messages` while it reads the table: on a large table, an
-- operator may build it first with `CREATE INDEX CONCURRENTLY` (README, "Upgrading"), and this
-- migration keeps it.
CREATE INDEX IF NOT EXISTS messages_contact_unprompted ON messages (contact_id) WHERE unprompted;
DROP INDEX messages_contact_sent;

-- Pages left part empty when rows are inserted, for the versions their updates write soon after.
ALTER TABLE messages SET (fillfactor = 80);
ALTER TABLE conversations SET (fillfactor = 70);
