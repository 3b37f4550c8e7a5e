-- The task's own channel on fd 3 (migration 28, docs/control.md): what the node writes while
-- a run lives. What it writes with the run's end goes with finishRuns (task.sql).

-- name: recordProgress
-- One flush of the runs' progress from fd 3 (docs/control.md), all runs at once, each on its
-- task row while the row still shows that run live for this worker and its term; the run's
-- end carries the last values to task_run (finishRuns).
UPDATE {{schema}}.task t
   SET progress = r.progress, progress_message = r.message
  FROM unnest(:taskIds::bigint[], :attempts::int[], :epochs::bigint[], :progress::real[], :messages::text[]) AS r(id, attempt, epoch, progress, message)
 WHERE t.id = r.id AND t.attempt = r.attempt AND t.live_worker_id = :workerId AND t.live_epoch = r.epoch
   AND t.state_id NOT IN ('AW', 'DR');
