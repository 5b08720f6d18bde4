-- One index fewer on the busiest table (SQLite). Keep in step with
-- migrations/postgres/20261123000009_jobs_finished.sql.

-- `jobs_due` (state, run_at) took a new entry at every change of a job's state (queued,
-- claimed, settled: three or more per job) and only the daily purge of finished jobs still used
-- it; claims read the partial indexes of migration 003. The purge gets an index of its own, one
-- entry per job, written when the job succeeds.
DROP INDEX jobs_due;
CREATE INDEX jobs_succeeded ON jobs (finished_at) WHERE state = 'succeeded';
