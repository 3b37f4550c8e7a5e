-- Version 27: rate limits on a concurrency key (issue 30). Beside max_running (how many run
-- at once), a key may have max_starts per period: at most that many of its tasks start in any
-- window of that length, cluster-wide, counted in the claim under the keys' lock
-- (claim_limits).
--   concurrency_limit.max_starts, .period   both null (no rate: every existing row) or both set
--   concurrency_start                       the starts of rate-limited keys still inside their
--                                           window: at most max_starts rows per key, pruned by
--                                           the claim
-- Why a table of its own and not task_run's starts: task_run has no concurrency_key, so
-- counting there joins every recent run of the key to its task, and keeps runs of no use to
-- the count; this table holds only what the window counts (a few rows a key), and a claim of
-- keys with no rate never reads it.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE concurrency_limit
  ADD COLUMN IF NOT EXISTS max_starts int CONSTRAINT concurrency_limit_max_starts_valid CHECK (max_starts >= 1),
  ADD COLUMN IF NOT EXISTS period interval CONSTRAINT concurrency_limit_period_valid CHECK (period > interval '0'),
  -- (Dropped first: a constraint has no IF NOT EXISTS, and the migration may run again.)
  DROP CONSTRAINT IF EXISTS concurrency_limit_rate_valid,
  ADD CONSTRAINT concurrency_limit_rate_valid CHECK ((max_starts IS NULL) = (period IS NULL));

CREATE TABLE IF NOT EXISTS concurrency_start (
  key     text        NOT NULL,
  started timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS concurrency_start_key_idx ON concurrency_start (key, started);

-- claim_limits gains outputs (rated keys, the earliest instant a held-back key frees a start):
-- CREATE OR REPLACE cannot change them, so the old one goes, and its file is applied again.
DROP FUNCTION IF EXISTS claim_limits(int, int, boolean);
DELETE FROM function_source WHERE name = 'claim_limits';
