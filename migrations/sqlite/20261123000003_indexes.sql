-- Claiming a job walks the due jobs in order and stops at the first few: with these partial
-- indexes it reads only what it takes, however long the backlog (with `jobs_due` alone it
-- gathered and sorted every due job at each claim: 13 ms per claim behind 18 000 queued sends).
CREATE INDEX jobs_pending ON jobs (run_at, id) WHERE state = 'pending';
-- Jobs whose worker died: found by their expired lease.
CREATE INDEX jobs_leased ON jobs (lease_expires_at) WHERE state = 'running';

-- A provider's message id first: a batch of webhooks looks its ids up with one `IN` list, an
-- index condition whatever the statistics say (with the channel and the direction first, a
-- planner that believed there were no inbound messages filtered the channel's every message).
DROP INDEX messages_provider_id;
CREATE UNIQUE INDEX messages_provider_id
    ON messages (provider_message_id, channel, direction) WHERE provider_message_id IS NOT NULL;
