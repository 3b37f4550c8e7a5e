-- What /metrics reads from the database (the rest comes from the node's own events).

-- name: queueDepth
-- Waiting tasks per group: ready to claim now, and delayed (a retry's backoff, a run_after
-- to come). Read only when scraped, at most every 15 s per node. Each count is over a partial
-- index of waiting tasks (task_waiting_any_idx, task_waiting_pinned_idx, task_delayed_idx),
-- never a scan of the table, which may hold millions of ended tasks.
SELECT group_id, sum(ready)::float8 AS ready, sum(delayed)::float8 AS delayed
  FROM (
    SELECT group_id, count(*) AS ready, 0 AS delayed
      FROM {{schema}}.task
     WHERE state_id = 'AW' AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0
     GROUP BY group_id
    UNION ALL
    SELECT group_id, count(*), 0
      FROM {{schema}}.task
     WHERE state_id = 'AW' AND worker_id IS NOT NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0
     GROUP BY group_id
    UNION ALL
    SELECT group_id, 0, count(*)
      FROM {{schema}}.task
     WHERE state_id = 'AW' AND run_after IS NOT NULL
     GROUP BY group_id
  ) c
 GROUP BY group_id
 ORDER BY group_id;
