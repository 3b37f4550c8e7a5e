-- The dashboard's overview (src/http/dashboard/views/overview.ts): counts, runs over time,
-- durations. Each reads an index of migration 29 alone where it can; the figures at 1 000 000
-- tasks and runs are in docs/dashboard.md "Overview". :now is the clock of the time-based
-- ones: null is the database's now(), a test gives its own.
--
-- A run's outcome is its end_reason (docs/lifecycle.md): completed is CS; cancelled,
-- node_stopped and dependency are CC; lost_claim never started a process; every other reason
-- is a failure (CF).

-- name: overviewSettings
-- Sent with the BEGIN of the overview's transaction. No JIT: the durations' estimate (one
-- look-up of task per run) passes jit_above_cost, and compiling took 15 to 50 ms more on a
-- statement of 140 (1 000 000 runs, 43 200 of them in the last day).
SET LOCAL jit = off;

-- name: overviewStateCounts
-- Tasks per group and state: every task counted once, from the table (a parallel sequential
-- scan: about 170 ms at 1 000 000 tasks). An index on (group_id, state_id) halved it, and
-- misled the claim's plan: version 33 dropped it.
SELECT group_id, state_id, count(*)::bigint AS tasks
  FROM {{schema}}.task
 GROUP BY group_id, state_id
 ORDER BY group_id, state_id;

-- name: overviewRunsOverTime
-- Runs started (not lost claims: no process started), ended completed and ended failed in
-- each of :buckets buckets of :bucket (an interval: 1 minute, 1 hour), the last one holding
-- :now, oldest first; buckets with none are there with zeros. Bucket edges are whole minutes
-- or hours of UTC (date_bin from the epoch); now: the time they are for. Reads
-- task_run_started_idx and task_run_finished_idx alone, and the live runs.
WITH span AS (
  SELECT date_bin(:bucket::interval, coalesce(:now::timestamptz, now()), timestamptz 'epoch') + :bucket::interval
           - :buckets::int * :bucket::interval AS since,
         coalesce(:now::timestamptz, now()) AS upto
), started AS (
  -- A run's row is written when it ends: the runs still going are the tasks with a live run
  -- (task_live_idx, as many as run now).
  SELECT date_bin(:bucket::interval, s.started, timestamptz 'epoch') AS at, count(*)::bigint AS runs
    FROM (SELECT r.started FROM {{schema}}.task_run r
           WHERE r.started >= (SELECT since FROM span) AND r.started <= (SELECT upto FROM span)
             AND r.end_reason IS DISTINCT FROM 'lost_claim'
          UNION ALL
          SELECT t.started FROM {{schema}}.task t
           WHERE t.live_worker_id IS NOT NULL
             AND t.started >= (SELECT since FROM span) AND t.started <= (SELECT upto FROM span)) s
   GROUP BY 1
), ended AS (
  SELECT date_bin(:bucket::interval, r.finished, timestamptz 'epoch') AS at,
         count(*) FILTER (WHERE r.end_reason = 'completed')::bigint AS completed,
         count(*) FILTER (WHERE r.end_reason NOT IN ('completed', 'cancelled', 'node_stopped', 'dependency', 'lost_claim'))::bigint AS failed
    FROM {{schema}}.task_run r
   WHERE r.finished >= (SELECT since FROM span) AND r.finished <= (SELECT upto FROM span)
   GROUP BY 1
)
SELECT b.at, coalesce(s.runs, 0)::bigint AS started, coalesce(e.completed, 0)::bigint AS completed,
       coalesce(e.failed, 0)::bigint AS failed, span.upto AS now
  FROM span, generate_series(span.since, span.upto, :bucket::interval) AS b(at)
  LEFT JOIN started s ON s.at = b.at
  LEFT JOIN ended e ON e.at = b.at
 ORDER BY b.at;

-- name: overviewDurations
-- The runs that ended in the :hours hours before :now (not lost claims and dependency ends:
-- no process ran), with their duration (finished − started) in ms: one row per group (kind
-- 'group', with p50 and p95), then the :limit commands with the longest mean run (kind
-- 'slowest') and the :limit with the most failed runs (kind 'failing', only commands with a
-- failure). Per command the mean and the max, not percentiles: those sort every run by its
-- command (an array), which took 17 ms more at 43 000 runs; the means are one hash pass.
-- The runs come from task_run_finished_idx alone, each one's group and command from task's
-- primary key.
WITH runs AS MATERIALIZED (
  SELECT t.group_id, t.command, extract(epoch FROM r.finished - r.started)::float8 * 1000 AS ms,
         r.end_reason NOT IN ('completed', 'cancelled', 'node_stopped') AS failed
    FROM {{schema}}.task_run r
    -- Each run's task by its primary key (OFFSET 0 keeps the planner from making this a hash
    -- join, which read the whole task table: 170 ms at 1 000 000 tasks, against 60 ms for
    -- 43 000 look-ups).
    CROSS JOIN LATERAL (SELECT group_id, command FROM {{schema}}.task WHERE id = r.task_id OFFSET 0) t
   WHERE r.finished > coalesce(:now::timestamptz, now()) - :hours::int * interval '1 hour'
     AND r.finished <= coalesce(:now::timestamptz, now())
     AND r.end_reason NOT IN ('lost_claim', 'dependency')
), by_command AS (
  SELECT command, count(*)::bigint AS runs, count(*) FILTER (WHERE failed)::bigint AS failed,
         avg(ms)::float8 AS mean_ms, max(ms)::float8 AS max_ms
    FROM runs
   GROUP BY command
)
(SELECT 'group'::text AS kind, group_id, NULL::varchar[] AS command, count(*)::bigint AS runs,
        count(*) FILTER (WHERE failed)::bigint AS failed,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::float8 AS p50_ms,
        percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::float8 AS p95_ms,
        avg(ms)::float8 AS mean_ms, max(ms)::float8 AS max_ms
   FROM runs
  GROUP BY group_id)
UNION ALL
(SELECT 'slowest', NULL, command, runs, failed, NULL, NULL, mean_ms, max_ms
   FROM by_command ORDER BY mean_ms DESC, runs DESC LIMIT :limit)
UNION ALL
(SELECT 'failing', NULL, command, runs, failed, NULL, NULL, mean_ms, max_ms
   FROM by_command WHERE failed > 0 ORDER BY failed DESC, runs DESC LIMIT :limit);
