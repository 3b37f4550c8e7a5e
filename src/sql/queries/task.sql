-- Runtime queries about tasks. Each "-- name:" block is one statement, loaded by
-- src/db/queries.ts; values are always bound parameters, named (:workerId; numbered $1… at load)
-- and typed in task.ts beside this file.

-- name: claimTasks
-- The node's only claim: as many waiting tasks of its group as it has free slots, smallest
-- priority first, then oldest; rows another node is claiming are skipped, not waited on.
-- Tasks any worker may run and tasks pinned to this worker are read from their own indexes
-- (each its head, in order) and merged: tasks pinned to other workers are never read. Up to
-- :freeSlots rows of the branch that loses the merge stay locked until this statement commits.
-- The EXISTS makes the claim conditional on the lease term the node holds (:epoch). A task whose
-- earlier process may still live (re-queued meanwhile, on any node) is not in the indexes.
-- Limits (migration 9): claim_limits, called once before any task is read, says how many the
-- group's max_running leaves, and which keys are at their limit (those tasks are skipped);
-- of the tasks read, a key's are taken up to the room it has left. `candidates` (how many were
-- read) tells the node that some were held back by a key, so more may wait behind them.
-- Each claimed task starts its next run: attempt + 1, marked live for this worker and term.
-- What may run (migration 14): for a node started with --commands allowlist (:checkCommands), or a group
-- whose commands = 'allowlist', each claimed task carries the matcher's answer: exec_path to
-- run, or why it is refused. Otherwise the matcher is never called (grp's one probe of task_group).
-- Spawn (issue 13): the group's run_as, pass_env, env and limits are read once (grp); each
-- limit returned is the smaller of the task's and the group's (least ignores nulls).
WITH grp AS MATERIALIZED (
  SELECT commands, run_as, pass_env, env, memory_max, cpu_seconds_max, open_files_max, pids_max
    FROM {{schema}}.task_group WHERE id = :groupId
), term AS (
  SELECT EXISTS (SELECT 1 FROM {{schema}}.worker w
                  WHERE w.id = :workerId AND w.lease_epoch = :epoch AND w.active AND w.locked_until > now()) AS held
), commands AS (
  SELECT :checkCommands::boolean OR EXISTS (SELECT 1 FROM grp WHERE grp.commands = 'allowlist') AS checked
), lim AS MATERIALIZED (
  SELECT * FROM {{schema}}.claim_limits(:groupId, :freeSlots, (SELECT held FROM term))
), any_worker AS (
  SELECT id, priority, last_state_change, concurrency_key, false AS pinned
    FROM {{schema}}.task
   WHERE state_id = 'AW' AND group_id = :groupId AND worker_id IS NULL AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0
     AND (SELECT held FROM term)
     AND (concurrency_key IS NULL OR concurrency_key <> ALL (CAST((SELECT blocked FROM lim) AS text[])))
   ORDER BY priority, last_state_change, id
   LIMIT (SELECT budget FROM lim)
   FOR UPDATE SKIP LOCKED
), pinned AS (
  SELECT id, priority, last_state_change, concurrency_key, true AS pinned
    FROM {{schema}}.task
   WHERE state_id = 'AW' AND group_id = :groupId AND worker_id = :workerId AND run_after IS NULL AND live_worker_id IS NULL AND deps_left = 0
     AND (SELECT held FROM term)
     AND (concurrency_key IS NULL OR concurrency_key <> ALL (CAST((SELECT blocked FROM lim) AS text[])))
   ORDER BY priority, last_state_change, id
   LIMIT (SELECT budget FROM lim)
   FOR UPDATE SKIP LOCKED
), candidates AS (
  SELECT c.*, row_number() OVER (PARTITION BY c.concurrency_key ORDER BY c.priority, c.last_state_change, c.id) AS nth
    FROM (SELECT * FROM any_worker UNION ALL SELECT * FROM pinned) c
), picked AS (
  SELECT c.id, c.pinned FROM candidates c
   WHERE c.concurrency_key IS NULL
      OR ((SELECT keyed FROM lim)
          AND c.nth <= coalesce((SELECT l.rooms[array_position(l.room_keys, c.concurrency_key)] FROM lim l), 1))
   ORDER BY c.priority, c.last_state_change, c.id
   LIMIT (SELECT budget FROM lim)
)
UPDATE {{schema}}.task t
   SET state_id = 'AE', worker_id = :workerId, lease_epoch = :epoch, node_name = :nodeName, started = now(),
       attempt = t.attempt + 1, live_worker_id = :workerId, live_epoch = :epoch, end_reason = NULL,
       finished = NULL, exit_code = NULL, exit_signal = NULL, pid = NULL, output = NULL
  FROM picked
 WHERE t.id = picked.id
RETURNING t.id, t.attempt, t.command, t.cwd, t.params, t.priority, t.last_state_change, picked.pinned,
          -- The group's timeout is read once (every task claimed is of group :groupId).
          (extract(epoch FROM coalesce(t.timeout, (SELECT g.timeout FROM {{schema}}.task_group g WHERE g.id = :groupId))) * 1000)::float8 AS timeout_ms,
          (SELECT count(*) FROM candidates)::int AS candidates,
          CASE WHEN (SELECT checked FROM commands) THEN {{schema}}.command_allowed(:groupId, CAST(t.command AS text[]), t.id) END AS exec_path,
          CASE WHEN (SELECT checked FROM commands) THEN {{schema}}.command_refusal(:groupId, CAST(t.command AS text[]), t.id) END AS refusal,
          coalesce(t.run_as, (SELECT run_as FROM grp)) AS run_as,
          (SELECT pass_env FROM grp) AS pass_env, (SELECT env FROM grp) AS env,
          least(t.memory_max, (SELECT memory_max FROM grp))::float8 AS memory_max,
          least(t.cpu_seconds_max, (SELECT cpu_seconds_max FROM grp)) AS cpu_seconds_max,
          least(t.open_files_max, (SELECT open_files_max FROM grp)) AS open_files_max,
          least(t.pids_max, (SELECT pids_max FROM grp)) AS pids_max;

-- name: recordPids
-- The pid of each run that started, on its task row while the row still shows that run (the
-- run's own row takes it with the run's end).
UPDATE {{schema}}.task t
   SET pid = r.pid
  FROM unnest(:taskIds::bigint[], :attempts::int[], :pids::int[]) AS r(id, attempt, pid)
 WHERE t.id = r.id AND t.attempt = r.attempt AND t.live_worker_id = :workerId AND t.live_epoch = :epoch
   -- A row queued again meanwhile (AW, DR) no longer shows the run; one set to C* while it runs does.
   AND t.state_id NOT IN ('AW', 'DR');

-- name: finishRuns
-- Writes the ends of runs, one statement per batch, each conditional on its run being live
-- for this worker and lease term (task id, attempt, epoch): a node that lost its lease
-- changes nothing. The end clears the task's live-run mark and writes the run's task_run row.
-- The task row takes the run's outcome if it still shows the run as active (AE/AC); a row
-- that someone set to C* keeps its state and error, and one queued again meanwhile (AW, DR)
-- keeps all it shows: it enters the claim's indexes now, and the trigger wakes its group.
--
-- A run of an executing task (not one being cancelled) that ended with an end reason in its
-- retry_on, before max_attempts runs, queues the task again with run_after = now + its
-- backoff (retry_delay, in migration 5, says whether and when), on any worker of the group
-- unless the run was claimed as pinned to this one.
WITH r AS (
  SELECT * FROM unnest(:taskIds::bigint[], :attempts::int[], :stateIds::text[], :endReasons::text[], :exitCodes::int[], :exitSignals::text[], :errors::text[], :outputs::text[], :pids::int[],
                       :cpuUserMs::bigint[], :cpuSystemMs::bigint[], :maxRssKb::bigint[], :timeoutMs::float8[], :pinned::boolean[])
         AS r(id, attempt, state_id, end_reason, exit_code, exit_signal, error, output, pid,
              cpu_user_ms, cpu_system_ms, max_rss_kb, timeout_ms, pinned)
), ended AS (
  -- The retry is decided on the row as locked (a cancel that came meanwhile never retries),
  -- once per column for a failed run (the jitter differs; whether it retries does not), and
  -- never for a completed one: the usual case costs no call of retry_delay.
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL,
         state_id   = CASE WHEN t.state_id NOT IN ('AE', 'AC') THEN t.state_id
                           WHEN t.state_id = 'AE' AND r.end_reason <> 'completed'
                            AND {{schema}}.retry_delay(t, r.end_reason) IS NOT NULL THEN 'AW'
                           ELSE r.state_id END,
         run_after  = CASE WHEN t.state_id = 'AE' AND r.end_reason <> 'completed'
                           THEN coalesce(now() + {{schema}}.retry_delay(t, r.end_reason), t.run_after)
                           ELSE t.run_after END,
         worker_id  = CASE WHEN t.state_id = 'AE' AND r.end_reason <> 'completed' AND NOT r.pinned
                            AND {{schema}}.retry_delay(t, r.end_reason) IS NOT NULL THEN NULL
                           ELSE t.worker_id END,
         end_reason = CASE WHEN t.state_id IN ('AE', 'AC') THEN r.end_reason ELSE t.end_reason END,
         error      = CASE WHEN t.state_id IN ('AE', 'AC') THEN r.error ELSE t.error END,
         exit_code   = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.exit_code ELSE r.exit_code END,
         exit_signal = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.exit_signal ELSE r.exit_signal END,
         output      = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.output ELSE r.output END,
         finished    = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.finished ELSE now() END,
         -- The node writes a run's pid with its end when the run ended before the pid was
         -- written on its own (recordPids waits a little: most short runs end first).
         pid         = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.pid ELSE coalesce(r.pid, t.pid) END
    FROM r
   WHERE t.id = r.id AND t.attempt = r.attempt AND t.live_worker_id = :workerId AND t.live_epoch = :epoch
  RETURNING t.id, t.attempt, t.started, r.pid, r.timeout_ms, r.exit_code, r.exit_signal, r.end_reason, r.error, r.output,
            r.cpu_user_ms, r.cpu_system_ms, r.max_rss_kb
)
INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, deadline, finished,
                                 exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb)
-- A timeout past what a timestamp can hold (e.g. '100000000 years', which the check allows)
-- has no deadline: 'infinity', rather than an error that would fail the batch for ever.
SELECT id, attempt, :workerId, :epoch, :nodeName, pid, coalesce(started, now()),
       CASE WHEN timeout_ms < 9e15 THEN started + make_interval(secs => timeout_ms / 1000) WHEN timeout_ms IS NOT NULL THEN 'infinity' END, now(),
       exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb
  FROM ended
-- Only rows a user wrote could be in the way; they must not make the batch fail for ever.
ON CONFLICT (task_id, attempt) DO NOTHING
RETURNING task_id AS id, attempt;

-- name: cancelRequests
-- The live runs of this term whose task asks to be cancelled.
SELECT id, attempt
  FROM {{schema}}.task
 WHERE live_worker_id = :workerId AND live_epoch = :epoch AND state_id = 'AC';

-- name: nextDelayedDue
-- How long until the group's earliest waiting task with a run_after is due (negative: it is);
-- null when there is none. Served by task_delayed_idx.
SELECT (extract(epoch FROM min(run_after) - now()) * 1000)::float8 AS delay_ms
  FROM {{schema}}.task
 WHERE group_id = :groupId AND state_id = 'AW' AND run_after IS NOT NULL;

-- name: releaseDelayed
-- Due waiting tasks become claimable: run_after cleared puts them in the claim's indexes, and
-- the update notifies the group ('queued'). Racing nodes release each row once.
UPDATE {{schema}}.task
   SET run_after = NULL
 WHERE group_id = :groupId AND state_id = 'AW' AND run_after IS NOT NULL AND run_after <= now();

-- name: taskRuns
-- The runs that ended, then the live one (from the task row: its task_run row is written
-- when it ends).
SELECT task_id, attempt, worker_id, lease_epoch, node_name, pid, started, deadline, finished,
       exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb
  FROM {{schema}}.task_run WHERE task_id = :taskId
UNION ALL
SELECT t.id, t.attempt, t.live_worker_id, t.live_epoch, t.node_name, t.pid, t.started,
       -- As in finishRuns: a timeout past the timestamps' range is no deadline ('infinity').
       CASE WHEN x.timeout < interval '285000 years' THEN t.started + x.timeout WHEN x.timeout IS NOT NULL THEN 'infinity' END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM {{schema}}.task t
       CROSS JOIN LATERAL (SELECT coalesce(t.timeout, (SELECT g.timeout FROM {{schema}}.task_group g WHERE g.id = t.group_id)) AS timeout) x
 WHERE t.id = :taskId AND t.live_worker_id IS NOT NULL
 ORDER BY attempt;

-- name: insertTask
INSERT INTO {{schema}}.task (command, group_id, priority, state_id, cwd, params, worker_id, recover_policy,
                             timeout, max_attempts, backoff_base, backoff_cap, retry_on, depends_on, concurrency_key)
VALUES (:command, :groupId, :priority, :stateId, :cwd, :params, :workerId, :recoverPolicy, make_interval(secs => :timeoutMs::float8 / 1000), :maxAttempts,
        make_interval(secs => :backoffBaseMs::float8 / 1000), make_interval(secs => :backoffCapMs::float8 / 1000), :retryOn, :dependsOn, :concurrencyKey)
RETURNING *;

-- name: prerequisites
SELECT p.id, p.state_id
  FROM {{schema}}.task t
  CROSS JOIN LATERAL unnest(t.depends_on) WITH ORDINALITY AS d(id, n)
  JOIN {{schema}}.task p ON p.id = d.id
 WHERE t.id = :taskId
 ORDER BY d.n;

-- name: queueTask
-- The seed's re-queue: any worker of the group, from DR or a C* state.
UPDATE {{schema}}.task SET state_id = 'AW', worker_id = NULL
 WHERE id = :taskId AND (state_id = 'DR' OR state_id LIKE 'C%')
RETURNING *;

-- name: cancelTask
-- An active task, or one whose row was ended by hand while a process of it still runs.
UPDATE {{schema}}.task t SET state_id = 'AC'
 WHERE t.id = :taskId
   AND (t.state_id LIKE 'A%'
        OR t.live_worker_id IS NOT NULL)
RETURNING *;

-- name: getTask
SELECT * FROM {{schema}}.task WHERE id = :taskId;

-- name: getTasks
SELECT * FROM {{schema}}.task WHERE id = ANY(:taskIds::bigint[]);

-- name: listTasks
SELECT * FROM {{schema}}.task
 WHERE (:stateId::char(2) IS NULL OR state_id = :stateId)
   AND (:groupId::int IS NULL OR group_id = :groupId)
 ORDER BY id DESC
 LIMIT :limit;
