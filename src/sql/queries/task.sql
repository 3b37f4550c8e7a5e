-- Runtime queries about tasks. Each "-- name:" block is one statement, loaded by
-- src/db/queries.ts; values are always bound parameters, named (:workerId; numbered $1… at load)
-- and typed in task.ts beside this file.

-- fragment: claim
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
grp AS MATERIALIZED (
  SELECT commands, run_as, pass_env, env, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max
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
  SELECT c.id, c.pinned, c.concurrency_key FROM candidates c
   WHERE c.concurrency_key IS NULL
      OR ((SELECT keyed FROM lim)
          AND c.nth <= coalesce((SELECT l.rooms[array_position(l.room_keys, c.concurrency_key)] FROM lim l), 1))
   ORDER BY c.priority, c.last_state_change, c.id
   LIMIT (SELECT budget FROM lim)
), starts AS (
  -- A start of a key with a rate (migration 27), at the time the claim records as started.
  INSERT INTO {{schema}}.concurrency_start (key, started)
  SELECT p.concurrency_key, now() FROM picked p
   WHERE p.concurrency_key = ANY (CAST((SELECT rated_keys FROM lim) AS text[]))
), claimed AS (
UPDATE {{schema}}.task t
   SET state_id = 'AE', worker_id = :workerId, lease_epoch = :epoch, node_name = :nodeName, started = now(),
       attempt = t.attempt + 1, live_worker_id = :workerId, live_epoch = :epoch, claim_pinned = picked.pinned, end_reason = NULL,
       finished = NULL, exit_code = NULL, exit_signal = NULL, pid = NULL, output = NULL
  FROM picked
 WHERE t.id = picked.id
RETURNING t.id, t.attempt, t.command, t.cwd, t.params, t.priority, t.last_state_change, picked.pinned, t.shed_slot,
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
          least(t.pids_max, (SELECT pids_max FROM grp)) AS pids_max,
          least(t.cpu_max, (SELECT cpu_max FROM grp))::float8 AS cpu_max,
          -- The task's own channel (version 28): its heartbeat timeout, and the prerequisites'
          -- results (PG_TASKS_DEPENDENCY_RESULTS), read only for a task with depends_on.
          (extract(epoch FROM coalesce(t.heartbeat_timeout, (SELECT g.heartbeat_timeout FROM {{schema}}.task_group g WHERE g.id = :groupId))) * 1000)::float8 AS heartbeat_ms,
          CASE WHEN t.depends_on IS NOT NULL THEN
            (SELECT jsonb_object_agg(p.id::text, p.result) FROM {{schema}}.task p WHERE p.id = ANY (t.depends_on) AND p.result IS NOT NULL)::text
          END AS dependency_results
)

-- name: claimTasks
-- The claim alone (see the claim fragment above).
WITH {{claim}}
-- The claimed rows, each with wake_ms; when none was claimed but a key's rate held some back,
-- one row of nulls but wake_ms, so that the node learns when to claim again.
SELECT c.*, l.wake_ms
  FROM lim l LEFT JOIN claimed c ON true
 WHERE c.id IS NOT NULL OR l.wake_ms IS NOT NULL;

-- name: recordPids
-- The pid of each run that started, on its task row while the row still shows that run (the
-- run's own row takes it with the run's end).
UPDATE {{schema}}.task t
   SET pid = r.pid
  FROM unnest(:taskIds::bigint[], :attempts::int[], :pids::int[]) AS r(id, attempt, pid)
 WHERE t.id = r.id AND t.attempt = r.attempt AND t.live_worker_id = :workerId AND t.live_epoch = :epoch
   -- A row queued again meanwhile (AW, DR) no longer shows the run; one set to C* while it runs does.
   AND t.state_id NOT IN ('AW', 'DR');

-- fragment: runEnds
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
--
-- A lost claim (end reason 'lost_claim': the claim committed, its reply never reached the node,
-- no process started) is no attempt: the task is queued again at once (AW, no run_after), on
-- the worker it was pinned to if the claim was of a pinned task (claim_pinned), else any, and
-- lost_claims counts it (retry_delay subtracts it from attempt). One being cancelled ends CC.
r AS (
  SELECT * FROM unnest(:taskIds::bigint[], :attempts::int[], :stateIds::text[], :endReasons::text[], :exitCodes::int[], :exitSignals::text[], :errors::text[], :outputs::text[], :pids::int[],
                       :cpuUserMs::bigint[], :cpuSystemMs::bigint[], :maxRssKb::bigint[], :timeoutMs::float8[], :pinned::boolean[],
                       :orphansKilled::int[], :memoryPeak::bigint[],
                       :progress::real[], :progressMessages::text[], :results::text[], :controlErrors::int[])
         AS r(id, attempt, state_id, end_reason, exit_code, exit_signal, error, output, pid,
              cpu_user_ms, cpu_system_ms, max_rss_kb, timeout_ms, pinned, orphans_killed, memory_peak,
              progress, progress_message, result, control_errors)
), ended AS (
  -- The retry is decided on the row as locked (a cancel that came meanwhile never retries),
  -- once per column for a failed run (the jitter differs; whether it retries does not), and
  -- never for a completed one: the usual case costs no call of retry_delay.
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL,
         lost_claims = t.lost_claims + CASE WHEN r.end_reason = 'lost_claim' THEN 1 ELSE 0 END,
         state_id   = CASE WHEN t.state_id NOT IN ('AE', 'AC') THEN t.state_id
                           WHEN r.end_reason = 'lost_claim' THEN CASE WHEN t.state_id = 'AE' THEN 'AW' ELSE 'CC' END
                           WHEN t.state_id = 'AE' AND r.end_reason <> 'completed'
                            AND {{schema}}.retry_delay(t, r.end_reason) IS NOT NULL THEN 'AW'
                           ELSE r.state_id END,
         run_after  = CASE WHEN t.state_id = 'AE' AND r.end_reason <> 'completed'
                           THEN coalesce(now() + {{schema}}.retry_delay(t, r.end_reason), t.run_after)
                           ELSE t.run_after END,
         worker_id  = CASE WHEN t.state_id = 'AE' AND r.end_reason = 'lost_claim'
                           THEN CASE WHEN coalesce(t.claim_pinned, false) THEN t.worker_id END
                           WHEN t.state_id = 'AE' AND r.end_reason <> 'completed' AND NOT r.pinned
                            AND {{schema}}.retry_delay(t, r.end_reason) IS NOT NULL THEN NULL
                           ELSE t.worker_id END,
         end_reason = CASE WHEN t.state_id = 'AC' AND r.end_reason = 'lost_claim' THEN 'cancelled'
                           WHEN t.state_id IN ('AE', 'AC') THEN r.end_reason ELSE t.end_reason END,
         error      = CASE WHEN t.state_id = 'AC' AND r.end_reason = 'lost_claim' THEN 'Cancelled'
                           WHEN t.state_id IN ('AE', 'AC') THEN r.error ELSE t.error END,
         exit_code   = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.exit_code ELSE r.exit_code END,
         exit_signal = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.exit_signal ELSE r.exit_signal END,
         output      = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.output ELSE r.output END,
         finished    = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.finished ELSE now() END,
         -- The node writes a run's pid with its end when the run ended before the pid was
         -- written on its own (recordPids waits a little: most short runs end first).
         pid         = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.pid ELSE coalesce(r.pid, t.pid) END,
         -- What the run said on fd 3 (version 28), with its end: a retry's AW clears it again
         -- (task_before_update), task_run keeps it.
         progress         = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.progress ELSE coalesce(r.progress, t.progress) END,
         progress_message = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.progress_message ELSE coalesce(r.progress_message, t.progress_message) END,
         result           = CASE WHEN t.state_id IN ('AW', 'DR') THEN t.result ELSE r.result::jsonb END
    FROM r
   WHERE t.id = r.id AND t.attempt = r.attempt AND t.live_worker_id = :workerId AND t.live_epoch = :epoch
  RETURNING t.id, t.attempt, t.started, r.pid, r.timeout_ms, r.exit_code, r.exit_signal, r.end_reason, r.error, r.output,
            r.cpu_user_ms, r.cpu_system_ms, r.max_rss_kb, r.orphans_killed, r.memory_peak,
            r.progress, r.progress_message, r.result, r.control_errors
), written AS (
  INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, deadline, finished,
                                   exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb,
                                   orphans_killed, memory_peak, progress, progress_message, result, control_errors)
  -- A timeout past what a timestamp can hold (e.g. '100000000 years', which the check allows)
  -- has no deadline: 'infinity', rather than an error that would fail the batch for ever.
  SELECT id, attempt, :workerId, :epoch, :nodeName, pid, coalesce(started, now()),
         CASE WHEN timeout_ms < 9e15 THEN started + make_interval(secs => timeout_ms / 1000) WHEN timeout_ms IS NOT NULL THEN 'infinity' END, now(),
         exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb, orphans_killed, memory_peak,
         progress, progress_message, result::jsonb, control_errors
    FROM ended
  -- Only rows a user wrote could be in the way; they must not make the batch fail for ever.
  ON CONFLICT (task_id, attempt) DO NOTHING
  RETURNING task_id AS id, attempt
)

-- name: finishRuns
-- The ends alone (see the runEnds fragment above).
WITH {{runEnds}}
SELECT id, attempt FROM written;

-- name: turnover
-- A slot turnover in one statement, so one round trip and one commit (docs/node.md, "Slot
-- turnover"): the ends of the runs that freed slots (runEnds), then the claim of their
-- replacements (claim), under the same lease term. Every write keeps its own condition: an
-- end lands only on its live run of :epoch, the claim only while :epoch holds the lease.
-- The claim's task reads share the statement's snapshot, taken before the ends: a task the
-- ends queue again (a retry, a lost claim) is claimed by a later claim (its update notifies);
-- the limits' counts (claim_limits) read ending runs as still running, or as ended when the
-- function's own snapshot follows the ends: the budget is at most what the ends' commit leaves,
-- never more, and the ends' notification of freed room wakes a claim for the rest.
-- One row at least (the claim's reply, else a row of nulls): `ended` names the runs whose end
-- was written ("id:attempt"); a run missing from it is no longer this term's.
WITH {{runEnds}}, {{claim}}
SELECT c.*, l.wake_ms, e.ended
  FROM (SELECT coalesce(array_agg(w.id || ':' || w.attempt), '{}') AS ended FROM written w) e
       CROSS JOIN lim l LEFT JOIN claimed c ON true;

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
       exit_code, exit_signal, end_reason, error, output, cpu_user_ms, cpu_system_ms, max_rss_kb, memory_peak, orphans_killed,
       progress, progress_message, result, control_errors
  FROM {{schema}}.task_run WHERE task_id = :taskId
UNION ALL
SELECT t.id, t.attempt, t.live_worker_id, t.live_epoch, t.node_name, t.pid, t.started,
       -- As in finishRuns: a timeout past the timestamps' range is no deadline ('infinity').
       CASE WHEN x.timeout < interval '285000 years' THEN t.started + x.timeout WHEN x.timeout IS NOT NULL THEN 'infinity' END,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       -- The live run's progress so far (version 28); its result and bad lines come with its end.
       t.progress, t.progress_message, NULL, NULL
  FROM {{schema}}.task t
       CROSS JOIN LATERAL (SELECT coalesce(t.timeout, (SELECT g.timeout FROM {{schema}}.task_group g WHERE g.id = t.group_id)) AS timeout) x
 WHERE t.id = :taskId AND t.live_worker_id IS NOT NULL
 ORDER BY attempt;

-- fragment: insertRow
-- One task as the client, the CLI and the dashboard add it (the three inserts below).
INSERT INTO {{schema}}.task (command, group_id, priority, state_id, cwd, params, worker_id, recover_policy,
                             timeout, max_attempts, backoff_base, backoff_cap, retry_on, depends_on, concurrency_key,
                             unique_key, run_after, depends_rule)
VALUES (:command, :groupId, :priority, :stateId, :cwd, :params, :workerId, :recoverPolicy, make_interval(secs => :timeoutMs::float8 / 1000), :maxAttempts,
        make_interval(secs => :backoffBaseMs::float8 / 1000), make_interval(secs => :backoffCapMs::float8 / 1000), :retryOn, :dependsOn, :concurrencyKey,
        :uniqueKey, :runAfter, coalesce(:dependsRule, 'all_success'))

-- name: insertTask
-- A unique_key held by an unended task fails it with 23505 on task_unique_key (the client
-- then names the holder: uniqueKeyHolder).
{{insertRow}}
RETURNING *;

-- name: insertTaskOrSkip
-- onDuplicate 'skip': no row when an unended task holds the key (the client then reads it).
-- The ON CONFLICT clause is the one docs/unique.md gives users: its WHERE is the index's.
{{insertRow}}
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING
RETURNING *;

-- name: insertTaskOrReplace
-- onDuplicate 'replace', as graphile-worker's job_key: the task holding the key takes the new
-- params, priority and run_after while it waits (DR or AW, a retry's wait included). No row
-- when it executes (AE, AC): the client refuses then, naming it.
{{insertRow}}
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC')
DO UPDATE SET params = EXCLUDED.params, priority = EXCLUDED.priority, run_after = EXCLUDED.run_after
   WHERE task.state_id IN ('DR', 'AW')
RETURNING *;

-- name: uniqueKeyHolder
-- The id of the unended task that holds a key, whoever owns it (null: none now).
SELECT {{schema}}.unique_key_holder(:uniqueKey) AS id;

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

-- name: termRuns
-- The live runs of a lease term. After a claim that failed (its reply lost: it may have
-- committed), the node looks for those it has no process for, before it claims again.
SELECT id, attempt FROM {{schema}}.task WHERE live_worker_id = :workerId AND live_epoch = :epoch;
