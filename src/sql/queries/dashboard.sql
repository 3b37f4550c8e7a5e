-- The dashboard's reads and writes (src/http/dashboard). Its writes are the statements a user
-- would write by hand, so the triggers judge them as they judge anyone's; its lists are keyset
-- pages (never OFFSET): each page starts after the last row of the one before, by index.

-- fragment: taskFilter
-- The task list's filter, each condition null when not used: the lists' and the bulk actions'.
(:state::char(2) IS NULL OR state_id = :state::char(2))
   AND (:groupId::int IS NULL OR group_id = :groupId)
   AND (:taskId::bigint IS NULL OR id = :taskId)
   AND (:text::text IS NULL
        OR strpos(lower(array_to_string(command, ' ')), lower(:text)) > 0
        OR strpos(lower(error), lower(:text)) > 0)
   AND (:endReason::text IS NULL OR end_reason = :endReason)
   AND (:since::timestamptz IS NULL OR last_state_change >= :since)
   AND (:until::timestamptz IS NULL OR last_state_change < :until)
   AND (:params::jsonb IS NULL OR params @> :params::jsonb)

-- name: dashboardTasksNewest
-- Tasks, newest first, each filter null when not used: :state, :groupId, :text (a substring of
-- the command or the error, case-insensitive: a scan, stopped as soon as the page is full),
-- :taskId (a search for a number: the primary key, not a scan), :endReason, :since and :until
-- (last_state_change in [since, until)), :params (JSON the task's params contain, @>: the GIN
-- index task_params_idx, migration 31); :afterId: the last id of the page before (null: the
-- first page). The same filter as the bulk actions' (below).
SELECT id, state_id, priority, group_id, worker_id, command, attempt, end_reason, created, last_state_change,
       started, finished, left(error, 200) AS error, next_start, shed_cron, depends_on, deps_left, run_after,
       live_worker_id, owner, progress, progress_message, (extract(epoch FROM last_state_change) * 1000000)::bigint AS age_key
  FROM {{schema}}.task
 WHERE {{taskFilter}}
   AND (:afterId::bigint IS NULL OR id < :afterId)
 ORDER BY id DESC
 LIMIT :limit;

-- name: dashboardTasksOldest
-- As dashboardTasksNewest, oldest first: :afterId after this id.
SELECT id, state_id, priority, group_id, worker_id, command, attempt, end_reason, created, last_state_change,
       started, finished, left(error, 200) AS error, next_start, shed_cron, depends_on, deps_left, run_after,
       live_worker_id, owner, progress, progress_message, (extract(epoch FROM last_state_change) * 1000000)::bigint AS age_key
  FROM {{schema}}.task
 WHERE {{taskFilter}}
   AND (:afterId::bigint IS NULL OR id > :afterId)
 ORDER BY id
 LIMIT :limit;

-- name: dashboardTasksQueue
-- In queue order: smallest priority first, then oldest (last_state_change), as the claim
-- takes waiting tasks. The cursor is the last row's (priority, last_state_change in
-- microseconds since the epoch, id): microseconds as an integer, because a JavaScript Date
-- would round them to milliseconds and skip or repeat rows at the page's edge.
-- The filters as dashboardTasksNewest; :afterPriority, :afterAgeKey (microseconds) and :afterId: the
-- cursor (all null: the first page).
SELECT id, state_id, priority, group_id, worker_id, command, attempt, end_reason, created, last_state_change,
       started, finished, left(error, 200) AS error, next_start, shed_cron, depends_on, deps_left, run_after,
       live_worker_id, owner, progress, progress_message, (extract(epoch FROM last_state_change) * 1000000)::bigint AS age_key
  FROM {{schema}}.task
 WHERE {{taskFilter}}
   AND (:afterId::bigint IS NULL
        OR (priority, last_state_change, id) > (:afterPriority::int, timestamptz 'epoch' + :afterAgeKey::bigint * interval '1 microsecond', :afterId::bigint))
 ORDER BY priority, last_state_change, id
 LIMIT :limit;

-- name: dashboardDependents
-- The tasks still waiting (AW or DR) for this one, from the dependents' index
-- (task_dependents_idx, migration 7); ended dependents are history and not looked up.
SELECT id, state_id, depends_rule
  FROM {{schema}}.task
 WHERE depends_on @> ARRAY[:taskId::bigint] AND depends_on IS NOT NULL AND state_id IN ('AW', 'DR')
 ORDER BY id
 LIMIT 100;

-- name: dashboardLastOutputSeq
-- Where a live page's output stream starts: the last chunk a run has written (−1: none yet).
SELECT coalesce(max(seq), -1)::int AS seq
  FROM {{schema}}.task_output
 WHERE task_id = :taskId AND attempt = :attempt;

-- name: dashboardWorkers
-- Every worker row with its status in database time: ok (holds a lease); paused, draining,
-- cancelling (holds it, with stop code 1, 2, 3: as `pg-tasks workers` says); failed (active with
-- a lapsed lease: its node died or lost the database), standby (not active, a standby node
-- seen in the last 150 s: it marks itself once a minute), stopped. lapses_in_ms: when an ok worker turns failed unless its
-- node renews first; the dashboard arms one timer at the earliest, since a lapse notifies
-- nobody.
SELECT id, group_id, node_name, host, pid, task_count, max_task_count, stop, active, locked_until, lease_taken,
       lease_epoch, standby_node, standby_seen,
       CASE WHEN active AND locked_until > now() AND stop = 1 THEN 'paused'
            WHEN active AND locked_until > now() AND stop = 2 THEN 'draining'
            WHEN active AND locked_until > now() AND stop = 3 THEN 'cancelling'
            WHEN active AND locked_until > now() THEN 'ok'
            WHEN active THEN 'failed'
            WHEN standby_seen > now() - interval '150 seconds' THEN 'standby'
            ELSE 'stopped' END AS status,
       CASE WHEN active AND locked_until > now()
            THEN (extract(epoch FROM locked_until - now()) * 1000)::float8 END AS lapses_in_ms
  FROM {{schema}}.worker
 ORDER BY id;

-- name: dashboardSchedules
-- Scheduled tasks, the next due first (task_schedule_idx holds only them).
SELECT id, state_id, group_id, command, next_start, shed_period_id, shed_period_count, shed_cron, shed_tz,
       shed_anchor, shed_clone, shed_overlap, shed_skip_count, last_state_change
  FROM {{schema}}.task
 WHERE next_start IS NOT NULL OR shed_cron IS NOT NULL
 ORDER BY next_start NULLS FIRST, id
 LIMIT :limit;

-- name: dashboardGroupRows
SELECT id, max_running, recover_policy, timeout::text AS timeout, keep_ended::text AS keep_ended,
       keep_runs::text AS keep_runs, max_attempts
  FROM {{schema}}.task_group
 ORDER BY id;

-- name: dashboardGroupCounts
-- Tasks per group and state, and the live runs per group: one pass over the table (the price
-- of an exact count; the groups page is the only one that pays it).
SELECT group_id, state_id, count(*)::bigint AS tasks,
       count(*) FILTER (WHERE live_worker_id IS NOT NULL)::bigint AS running
  FROM {{schema}}.task
 GROUP BY group_id, state_id
 ORDER BY group_id, state_id;

-- name: dashboardCancel
-- The seed's cancel, for any state: the trigger refuses what may not be cancelled ("can't
-- cancel an inactive task"), and ends a waiting task at once (CC).
UPDATE {{schema}}.task SET state_id = 'AC' WHERE id = :taskId
RETURNING id, state_id;

-- name: dashboardQueue
-- The seed's queue and re-queue (a draft, or an ended task, for any worker of its group),
-- for any state: the trigger refuses an executing one ("cancel it first").
UPDATE {{schema}}.task SET state_id = 'AW', worker_id = NULL WHERE id = :taskId
RETURNING id, state_id;

-- The dashboard's bulk actions (issue 31): re-queue or cancel every task a filter of the task
-- list shows, in one statement, so the triggers judge each row as they judge anyone's and
-- notify once per statement (task_notify), not once per task. The filter is the list's
-- (dashboardTasksNewest): :state, :groupId, :text, :taskId, :endReason, :since, :until,
-- :params, each null when not used. Each statement takes at most :limit tasks, lowest id
-- first; the dashboard asks for at most 10 000 at a time (a statement that holds the row locks
-- of a few seconds' work, not of the whole table). The ids are picked once into an array and
-- each row found by the primary key: as `id IN (subquery)` the planner, misled by statistics
-- that a bulk change had just made stale, joined the two with a nested loop (10 000 × 10 000:
-- 31 s to re-queue 10 000 tasks), and as `id = ANY(array)` it filtered an index scan by the
-- array (0.5 s of the 1.2 s).

-- name: bulkCount
-- How many of the filter's tasks the action would change (:states: C* to re-queue, AW and AE
-- to cancel), counted up to :limit only: a confirmation needs "10 000 or more", not the
-- exact size of a million-row table.
SELECT count(*)::int AS tasks
  FROM (SELECT 1
          FROM {{schema}}.task
         WHERE state_id = ANY(:states::char(2)[])
           AND {{taskFilter}}
         LIMIT :limit) AS matching;

-- name: bulkRequeue
-- The seed's re-queue of every ended (C*) task of the filter, for any worker of its group. The
-- state is checked again on a row another writer changed meanwhile, so a task that left C*
-- since the ids were picked is left alone.
WITH changed AS (
  UPDATE {{schema}}.task SET state_id = 'AW', worker_id = NULL
    FROM unnest(ARRAY(
                SELECT id
                  FROM {{schema}}.task
                 WHERE state_id IN ('CS', 'CF', 'CC')
                   AND {{taskFilter}}
                 ORDER BY id
                 LIMIT :limit)) AS pick(id)
   WHERE task.id = pick.id AND task.state_id IN ('CS', 'CF', 'CC')
  RETURNING 1)
SELECT count(*)::int AS tasks FROM changed;

-- name: bulkCancel
-- The seed's cancel of every waiting or executing (AW, AE) task of the filter: the trigger
-- ends a waiting one at once (CC) and leaves an executing one AC for its node to kill.
WITH changed AS (
  UPDATE {{schema}}.task SET state_id = 'AC'
    FROM unnest(ARRAY(
                SELECT id
                  FROM {{schema}}.task
                 WHERE state_id IN ('AW', 'AE')
                   AND {{taskFilter}}
                 ORDER BY id
                 LIMIT :limit)) AS pick(id)
   WHERE task.id = pick.id AND task.state_id IN ('AW', 'AE')
  RETURNING 1)
SELECT count(*)::int AS tasks FROM changed;
