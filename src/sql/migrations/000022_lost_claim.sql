-- Version 22: a lost claim is not an attempt (issue 26).
--
-- A claim that committed while its reply was lost (a connection dropped during a failover)
-- leaves a run live for the node's term with no process anywhere. The node notices it at a
-- renewal (LiveRuns.checkOwned), or the term's clean end does (failOrphanRuns). Such a run no
-- longer ends the task CF 'lost': it is recorded in task_run with end_reason 'lost_claim',
-- and the task is queued again at once (AW, no run_after), pinned as the claim was. A cancel
-- that came meanwhile still wins: the task ends CC.
--
-- attempt still counts the runs and only a claim moves it, so a lost claim keeps its number
-- (its task_run row is that attempt). task.lost_claims counts the lost claims of the task, and
-- retry_delay reads attempt - lost_claims: a lost claim counts neither toward max_attempts nor
-- in the backoff. task.claim_pinned says whether the last claim took the task as pinned to its
-- worker, so that its re-queue keeps the pinning without the node's reply.
--
-- The function files changed with this version (src/sql/functions): task_before_update lets
-- the end of a lost claim take the task from AE to AW with no run_after (and keeps
-- lost_claims for that move only); retry_delay reads attempt - lost_claims. Older nodes refuse
-- this schema.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN lost_claims int NOT NULL DEFAULT 0 CONSTRAINT task_lost_claims_valid CHECK (lost_claims >= 0),
  ADD COLUMN claim_pinned boolean,
  DROP CONSTRAINT task_end_reason_valid,
  ADD CONSTRAINT task_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected', 'lost_claim'));

ALTER TABLE task_run
  DROP CONSTRAINT task_run_end_reason_valid,
  ADD CONSTRAINT task_run_end_reason_valid CHECK (end_reason IN (
    'completed', 'exit_code', 'signal', 'spawn_error', 'cancelled', 'timeout',
    'worker_failed', 'lost', 'node_stopped', 'dependency', 'refused', 'oom', 'result_rejected', 'lost_claim'));
