-- Retention: what prune deletes, in small batches (each its own short transaction) so that no
-- statement holds many locks or runs long while nodes work.

-- name: pruneTasks
-- Up to $3 ended tasks (CS, CF, CC) that ended before now − $1 ms, of group $2 (null: all),
-- oldest ids first. Kept whatever their age: a schedule (it fires again), a task whose process
-- still lives, and a prerequisite that a waiting or draft task still names (deleting it would
-- cancel that task). Rows another statement holds are skipped, not waited for. Their runs go
-- with them (task_delete_runs).
-- $1 older than (ms), $2 group or null, $3 batch size
WITH doomed AS (
  SELECT t.id
    FROM {{schema}}.task t
   WHERE t.state_id IN ('CS', 'CF', 'CC')
     AND coalesce(t.finished, t.last_state_change) < now() - make_interval(secs => $1::float8 / 1000)
     AND ($2::int IS NULL OR t.group_id = $2)
     AND t.next_start IS NULL AND t.shed_cron IS NULL
     AND t.live_worker_id IS NULL
     AND NOT EXISTS (SELECT 1 FROM {{schema}}.task d
                      WHERE d.depends_on @> ARRAY[t.id] AND d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR'))
   ORDER BY t.id
   LIMIT $3
     FOR UPDATE SKIP LOCKED
)
DELETE FROM {{schema}}.task t USING doomed WHERE t.id = doomed.id;

-- name: pruneRuns
-- Up to $3 runs that ended before now − $1 ms, of the tasks that stay (a schedule's, a task
-- run again and again), group $2 (null: all); a task's latest run is kept, as the task row
-- still shows it.
-- $1 older than (ms), $2 group or null, $3 batch size
WITH doomed AS (
  SELECT r.task_id, r.attempt
    FROM {{schema}}.task_run r
    JOIN {{schema}}.task t ON t.id = r.task_id
   WHERE r.finished < now() - make_interval(secs => $1::float8 / 1000)
     AND r.attempt < t.attempt
     AND ($2::int IS NULL OR t.group_id = $2)
   LIMIT $3
)
DELETE FROM {{schema}}.task_run r USING doomed WHERE r.task_id = doomed.task_id AND r.attempt = doomed.attempt;
