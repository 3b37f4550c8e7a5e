-- Runtime queries about tasks. Each "-- name:" block is one statement, loaded by
-- src/db/queries.ts; values are always bound parameters.

-- name: claimTasks
-- The node's only claim: as many waiting tasks of its group as it has free slots, smallest
-- priority first, then oldest; rows another node is claiming are skipped, not waited on.
-- Tasks any worker may run and tasks pinned to this worker are read from their own indexes
-- (each its head, in order) and merged: tasks pinned to other workers are never read. Up to
-- $3 rows of the branch that loses the merge stay locked until this statement commits.
-- The EXISTS makes the claim conditional on the lease term the node holds ($4). A task with
-- a live run (re-queued while its process still runs, on any node) waits for it to end.
-- Each claimed task starts its next run: attempt + 1, and a task_run row.
-- $1 group, $2 worker, $3 free slots, $4 lease epoch, $5 node name
WITH term AS (
  SELECT EXISTS (SELECT 1 FROM {{schema}}.worker w
                  WHERE w.id = $2 AND w.lease_epoch = $4 AND w.active AND w.locked_until > now()) AS held
), any_worker AS (
  SELECT id, priority, last_state_change
    FROM {{schema}}.task w
   WHERE state_id = 'AW' AND group_id = $1 AND worker_id IS NULL AND run_after IS NULL
     AND (SELECT held FROM term)
     AND NOT EXISTS (SELECT 1 FROM {{schema}}.task_run r WHERE r.task_id = w.id AND r.finished IS NULL)
   ORDER BY priority, last_state_change, id
   LIMIT $3
   FOR UPDATE SKIP LOCKED
), pinned AS (
  SELECT id, priority, last_state_change
    FROM {{schema}}.task w
   WHERE state_id = 'AW' AND group_id = $1 AND worker_id = $2 AND run_after IS NULL
     AND (SELECT held FROM term)
     AND NOT EXISTS (SELECT 1 FROM {{schema}}.task_run r WHERE r.task_id = w.id AND r.finished IS NULL)
   ORDER BY priority, last_state_change, id
   LIMIT $3
   FOR UPDATE SKIP LOCKED
), picked AS (
  SELECT id FROM (SELECT * FROM any_worker UNION ALL SELECT * FROM pinned) c
   ORDER BY priority, last_state_change, id
   LIMIT $3
), claimed AS (
  UPDATE {{schema}}.task t
     SET state_id = 'AE', worker_id = $2, lease_epoch = $4, node_name = $5, started = now(),
         attempt = t.attempt + 1, end_reason = NULL,
         finished = NULL, exit_code = NULL, exit_signal = NULL, pid = NULL, output = NULL
    FROM picked
   WHERE t.id = picked.id
  RETURNING t.id, t.attempt, t.command, t.cwd, t.params, t.priority, t.last_state_change,
            coalesce(t.timeout, (SELECT g.timeout FROM {{schema}}.task_group g WHERE g.id = t.group_id)) AS timeout
), runs AS (
  INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, deadline)
  SELECT id, attempt, $2, $4, $5, now(), now() + timeout FROM claimed
)
SELECT id, attempt, command, cwd, params, priority, last_state_change,
       (extract(epoch FROM timeout) * 1000)::float8 AS timeout_ms
  FROM claimed;

-- name: recordPids
-- The pid of each run that started, on its task row while the row still shows that run (the
-- run's own row takes it with the run's end: one write less per run).
-- $1 worker, $2 lease epoch, $3 task ids, $4 attempts, $5 pids
UPDATE {{schema}}.task t
   SET pid = r.pid
  FROM unnest($3::bigint[], $4::int[], $5::int[]) AS r(id, attempt, pid)
 WHERE t.id = r.id AND t.attempt = r.attempt AND t.worker_id = $1 AND t.lease_epoch = $2
   AND t.state_id IN ('AE', 'AC');

-- name: finishRuns
-- Writes the ends of runs, one statement per batch, each conditional on its run (task id,
-- attempt, and the lease term that claimed it): a node that lost its lease changes nothing.
-- The task row takes the run's figures; its state and error only if it still shows the run
-- as active (AE/AC): a row that someone set to C* or queued again meanwhile keeps that. A
-- task queued again while this run's process still lived can now start: its group is woken.
--
-- A run of an executing task (not one being cancelled) that ended with an end reason in its
-- retry_on, before max_attempts runs, queues the task again with run_after = now + its
-- backoff (retry_delay, in migration 5, says whether and when).
-- $1 worker, $2 lease epoch, $3 notification channel, then one array per column
WITH r AS (
  SELECT * FROM unnest($4::bigint[], $5::int[], $6::text[], $7::text[], $8::int[], $9::text[], $10::text[], $11::text[], $12::int[],
                       $13::bigint[], $14::bigint[], $15::bigint[])
         AS r(id, attempt, state_id, end_reason, exit_code, exit_signal, error, output, pid, cpu_user_ms, cpu_system_ms, max_rss_kb)
), run AS (
  UPDATE {{schema}}.task_run tr
     SET finished = now(), exit_code = r.exit_code, exit_signal = r.exit_signal,
         end_reason = r.end_reason, error = r.error, output = r.output, pid = r.pid,
         cpu_user_ms = r.cpu_user_ms, cpu_system_ms = r.cpu_system_ms, max_rss_kb = r.max_rss_kb
    FROM r
   WHERE tr.task_id = r.id AND tr.attempt = r.attempt AND tr.worker_id = $1 AND tr.lease_epoch = $2
     AND tr.finished IS NULL
  RETURNING tr.task_id, tr.attempt
), policy AS (
  -- A completed run never retries: the usual case costs no call of retry_delay.
  SELECT t.id, CASE WHEN t.state_id = 'AE' AND r.end_reason <> 'completed' THEN {{schema}}.retry_delay(t, r.end_reason) END AS delay
    FROM r
    JOIN run ON run.task_id = r.id AND run.attempt = r.attempt
    JOIN {{schema}}.task t ON t.id = r.id AND t.attempt = r.attempt
), updated AS (
  UPDATE {{schema}}.task t
     SET state_id   = CASE WHEN t.state_id NOT IN ('AE', 'AC') THEN t.state_id
                           WHEN p.delay IS NOT NULL THEN 'AW' ELSE r.state_id END,
         run_after  = CASE WHEN p.delay IS NOT NULL THEN now() + p.delay ELSE t.run_after END,
         end_reason = CASE WHEN t.state_id IN ('AE', 'AC') THEN r.end_reason ELSE t.end_reason END,
         error      = CASE WHEN t.state_id IN ('AE', 'AC') THEN r.error ELSE t.error END,
         exit_code = r.exit_code, exit_signal = r.exit_signal, output = r.output, finished = now()
    FROM r JOIN policy p ON p.id = r.id
   WHERE t.id = r.id AND t.attempt = r.attempt AND t.state_id NOT IN ('AW', 'DR')
), woken AS (
  SELECT pg_notify($3, json_build_object('e', 'queued', 'g', g.group_id)::text)
    FROM (SELECT DISTINCT t.group_id FROM {{schema}}.task t JOIN run ON t.id = run.task_id
           WHERE t.state_id = 'AW' AND t.run_after IS NULL) g
)
SELECT run.task_id AS id, run.attempt, (SELECT count(*) FROM woken) AS woken FROM run;

-- name: cancelRequests
-- The live runs of this term whose task asks to be cancelled.
-- $1 worker, $2 lease epoch
SELECT r.task_id AS id, r.attempt
  FROM {{schema}}.task_run r
  JOIN {{schema}}.task t ON t.id = r.task_id
 WHERE r.worker_id = $1 AND r.lease_epoch = $2 AND r.finished IS NULL AND t.state_id = 'AC';

-- name: nextDelayedDue
-- How long until the group's earliest waiting task with a run_after is due (negative: it is);
-- null when there is none. Served by task_delayed_idx.
-- $1 group
SELECT (extract(epoch FROM min(run_after) - now()) * 1000)::float8 AS delay_ms
  FROM {{schema}}.task
 WHERE group_id = $1 AND state_id = 'AW' AND run_after IS NOT NULL;

-- name: releaseDelayed
-- Due waiting tasks become claimable: run_after cleared puts them in the claim's indexes, and
-- the update notifies the group ('queued'). Racing nodes release each row once.
-- $1 group
UPDATE {{schema}}.task
   SET run_after = NULL
 WHERE group_id = $1 AND state_id = 'AW' AND run_after IS NOT NULL AND run_after <= now();

-- name: taskRuns
-- $1 task id
SELECT * FROM {{schema}}.task_run WHERE task_id = $1 ORDER BY attempt;

-- name: insertTask
-- $1 command, $2 group, $3 priority, $4 state, $5 cwd, $6 params, $7 worker, $8 recover policy,
-- $9 timeout (ms), $10 max attempts, $11 backoff base (ms), $12 backoff cap (ms), $13 retry on
INSERT INTO {{schema}}.task (command, group_id, priority, state_id, cwd, params, worker_id, recover_policy,
                             timeout, max_attempts, backoff_base, backoff_cap, retry_on)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, make_interval(secs => $9::float8 / 1000), $10,
        make_interval(secs => $11::float8 / 1000), make_interval(secs => $12::float8 / 1000), $13)
RETURNING *;

-- name: queueTask
-- The seed's re-queue: any worker of the group, from DR or a C* state.
UPDATE {{schema}}.task SET state_id = 'AW', worker_id = NULL
 WHERE id = $1 AND (state_id = 'DR' OR state_id LIKE 'C%')
RETURNING *;

-- name: cancelTask
-- An active task, or one whose row was ended by hand while a process of it still runs.
UPDATE {{schema}}.task t SET state_id = 'AC'
 WHERE t.id = $1
   AND (t.state_id LIKE 'A%'
        OR EXISTS (SELECT 1 FROM {{schema}}.task_run r WHERE r.task_id = t.id AND r.finished IS NULL))
RETURNING *;

-- name: getTask
SELECT * FROM {{schema}}.task WHERE id = $1;

-- name: listTasks
-- $1 state or null, $2 group or null, $3 limit
SELECT * FROM {{schema}}.task
 WHERE ($1::char(2) IS NULL OR state_id = $1)
   AND ($2::int IS NULL OR group_id = $2)
 ORDER BY id DESC
 LIMIT $3;
