-- Schema version 3: the outbox tuned for its churn (every job is inserted,
-- leased, perhaps retried and deleted within seconds).
--
-- An index for DueJobs' look-ahead to the earliest NotBefore still ahead:
-- without it each look scanned the whole jobs table, dead rows included
-- (1.7 ms a call, half the database's time in a burst of 1,000 requests:
-- pg_stat_statements under cmd/loadgen). No index on the lease columns:
-- a claim or renewal then changes no indexed column and, with room left
-- on the page (fillfactor), is a HOT update that adds no index entries for
-- the claims to wade through.

CREATE INDEX jobs_not_before ON jobs (not_before) WHERE not_before IS NOT NULL;
ALTER TABLE jobs SET (fillfactor = 50);

-- Periodic tasks run once across replicas (Store.Turn): the time each is
-- due again. A replica that takes a turn moves next_at on; the others find
-- it not due.
CREATE TABLE turns (
    name    text        PRIMARY KEY,
    next_at timestamptz NOT NULL
);
