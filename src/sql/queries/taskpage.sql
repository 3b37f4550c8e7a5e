-- The dashboard's task page beyond the task row (src/http/dashboard/views/graph.ts, runs.ts):
-- its dependency graph and its runs, each read bounded, whatever the task's history holds.

-- name: dashboardGraphAround
-- The tasks around :taskId: its prerequisites and theirs up to :levels levels (depth −1, −2…),
-- its dependents and theirs down to :levels (1, 2…), itself (0). Each level reads at most
-- :fanOut neighbours of a task and each direction at most :pull rows (the walk stops there:
-- a CTE is read only as far as its reader asks), so a task with 100 000 dependents costs what
-- one with :fanOut costs. Down goes by task_depends_on_idx (migration 30), up by the primary
-- key. The :nodes nearest are returned; the caller tells "more" from each one's counts
-- (dashboardGraphNodes).
WITH RECURSIVE up(id, depth) AS (
  SELECT :taskId::bigint, 0
  UNION
  SELECT p.id, u.depth + 1
    FROM up u
    JOIN {{schema}}.task t ON t.id = u.id
    CROSS JOIN LATERAL (SELECT p.id
                          FROM unnest(t.depends_on) AS d(id)
                          JOIN {{schema}}.task p ON p.id = d.id
                         LIMIT :fanOut) p
   WHERE u.depth < :levels
), down(id, depth) AS (
  SELECT :taskId::bigint, 0
  UNION
  SELECT c.id, w.depth + 1
    FROM down w
    CROSS JOIN LATERAL (SELECT c.id
                          FROM {{schema}}.task c
                         WHERE c.depends_on @> ARRAY[w.id] AND c.depends_on IS NOT NULL
                         LIMIT :fanOut) c
   WHERE w.depth < :levels
)
SELECT id, min(depth)::int AS depth
  FROM ((SELECT id, -depth AS depth FROM up LIMIT :pull)
        UNION ALL
        (SELECT id, depth FROM down LIMIT :pull)) w
 GROUP BY id
 ORDER BY abs(min(depth)), id
 LIMIT :nodes;

-- name: dashboardGraphComponent
-- The whole DAG :taskId belongs to (its connected component: prerequisites and dependents,
-- theirs, and so on), the first :nodes tasks met breadth first from it. UNION keeps each
-- task once, so the walk never goes back; each task's neighbours are read :fanOut at most,
-- and the walk stops after :nodes tasks.
WITH RECURSIVE walk(id) AS (
  SELECT :taskId::bigint
  UNION
  SELECT n.id
    FROM walk w
    CROSS JOIN LATERAL (
      (SELECT p.id
         FROM {{schema}}.task t
         CROSS JOIN LATERAL unnest(t.depends_on) AS d(id)
         JOIN {{schema}}.task p ON p.id = d.id
        WHERE t.id = w.id
        LIMIT :fanOut)
      UNION ALL
      (SELECT c.id
         FROM {{schema}}.task c
        WHERE c.depends_on @> ARRAY[w.id] AND c.depends_on IS NOT NULL
        LIMIT :fanOut)
    ) n
)
SELECT id FROM walk LIMIT :nodes;

-- name: dashboardGraphNodes
-- What the graph draws of the tasks :ids: state, rule, a short command, the prerequisites
-- among :ids (the edges), and how many prerequisites (that still exist) and dependents each
-- has in all, counted up to 100: the graph says "N more" for those it does not show.
SELECT t.id, t.state_id, t.depends_rule, t.end_reason,
       left(array_to_string(t.command, ' '), 80) AS command,
       ARRAY(SELECT d.id FROM unnest(t.depends_on) AS d(id) WHERE d.id = ANY (:ids::bigint[])) AS shown_prerequisites,
       (SELECT count(*)::int FROM (SELECT 1 FROM unnest(t.depends_on) AS d(id)
                                     JOIN {{schema}}.task p ON p.id = d.id LIMIT 100) x) AS prerequisites,
       (SELECT count(*)::int FROM (SELECT 1 FROM {{schema}}.task c
                                    WHERE c.depends_on @> ARRAY[t.id] AND c.depends_on IS NOT NULL LIMIT 100) x) AS dependents
  FROM {{schema}}.task t
 WHERE t.id = ANY (:ids::bigint[]);

-- name: dashboardRunsBefore
-- A page of a task's runs, newest first: those before attempt :beforeAttempt (null: from the
-- newest, with the live run, which has no task_run row until it ends), :limit of them. Never
-- the output (a run's output is read on its own, for the run shown) and only the first line
-- of the error, up to 300 characters: a page of 50 runs stays a few KB whatever they printed.
-- Read backwards on the primary key (task_id, attempt): the page costs the same at attempt
-- 10 000 as at 50 (the inner ORDER BY and LIMIT: without them the planner sorts every run
-- of the task). duration_ms: to now for the live run.
SELECT attempt, worker_id, node_name, pid, started, finished, duration_ms, exit_code, exit_signal, end_reason,
       error, cpu_user_ms, cpu_system_ms, max_rss_kb, memory_peak
  FROM ((SELECT r.attempt, r.worker_id, r.node_name, r.pid, r.started, r.finished,
               (extract(epoch FROM coalesce(r.finished, now()) - r.started) * 1000)::float8 AS duration_ms,
               r.exit_code, r.exit_signal, r.end_reason, left(split_part(r.error, E'\n', 1), 300) AS error,
               r.cpu_user_ms, r.cpu_system_ms, r.max_rss_kb, r.memory_peak
          FROM {{schema}}.task_run r
         WHERE r.task_id = :taskId AND r.attempt < coalesce(:beforeAttempt::int, 2147483647)
         ORDER BY r.attempt DESC
         LIMIT :limit)
        UNION ALL
        SELECT t.attempt, t.live_worker_id, t.node_name, t.pid, t.started, NULL,
               (extract(epoch FROM now() - t.started) * 1000)::float8,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
          FROM {{schema}}.task t
         WHERE t.id = :taskId AND t.live_worker_id IS NOT NULL AND t.attempt < coalesce(:beforeAttempt::int, 2147483647)) runs
 ORDER BY attempt DESC
 LIMIT :limit;

-- name: dashboardRunsAfter
-- The page of runs after attempt :afterAttempt (the "newer" link), oldest first: the caller
-- shows them newest first. As dashboardRunsBefore otherwise, the live run included.
SELECT attempt, worker_id, node_name, pid, started, finished, duration_ms, exit_code, exit_signal, end_reason,
       error, cpu_user_ms, cpu_system_ms, max_rss_kb, memory_peak
  FROM ((SELECT r.attempt, r.worker_id, r.node_name, r.pid, r.started, r.finished,
               (extract(epoch FROM coalesce(r.finished, now()) - r.started) * 1000)::float8 AS duration_ms,
               r.exit_code, r.exit_signal, r.end_reason, left(split_part(r.error, E'\n', 1), 300) AS error,
               r.cpu_user_ms, r.cpu_system_ms, r.max_rss_kb, r.memory_peak
          FROM {{schema}}.task_run r
         WHERE r.task_id = :taskId AND r.attempt > :afterAttempt
         ORDER BY r.attempt
         LIMIT :limit)
        UNION ALL
        SELECT t.attempt, t.live_worker_id, t.node_name, t.pid, t.started, NULL,
               (extract(epoch FROM now() - t.started) * 1000)::float8,
               NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
          FROM {{schema}}.task t
         WHERE t.id = :taskId AND t.live_worker_id IS NOT NULL AND t.attempt > :afterAttempt) runs
 ORDER BY attempt
 LIMIT :limit;
