-- Runtime queries of the scheduler. :now is null in production (the database's now()) and a
-- fixed instant in tests.

-- name: upcomingSchedules
-- How long until the group's earliest schedule is due (negative: overdue; served by
-- task_schedule_idx), whether a cron schedule still needs its first slot computed, and the rows
-- that come due first (at that same next_start), with what the node needs to work out each
-- one's following slot before the timer fires: the timer then fires them with fireSlots, in
-- one statement. Only rows fireSlots can fire are listed
-- (clones with an overlap policy other than allow are the general fire's). Every row of the
-- result carries delay_ms and uninitialised; with nothing scheduled, one row of nulls.
WITH first AS (
  SELECT min(next_start) AS at, coalesce(bool_or(next_start IS NULL), false) AS uninitialised
    FROM {{schema}}.task
   WHERE group_id = :groupId AND (next_start IS NOT NULL OR shed_cron IS NOT NULL)
)
-- next_start_exact: next_start as text, to the microsecond (a JavaScript Date keeps milliseconds),
-- for fireSlots to compare with.
SELECT (extract(epoch FROM f.at - coalesce(:now::timestamptz, now())) * 1000)::float8 AS delay_ms, f.uninitialised,
       t.id, t.next_start, t.next_start::text AS next_start_exact, t.shed_period_id, t.shed_period_count, t.shed_cron, t.shed_tz, t.shed_anchor
  FROM first f
  LEFT JOIN LATERAL (
    SELECT t.id, t.next_start, t.shed_period_id, t.shed_period_count, t.shed_cron, t.shed_tz, t.shed_anchor
      FROM {{schema}}.task t
     WHERE t.group_id = :groupId AND t.next_start = f.at
       AND (NOT t.shed_clone OR t.shed_overlap = 'allow')
     ORDER BY t.id
     LIMIT :limit
  ) t ON true;

-- name: fireSlots
-- The timer's fire (migration 16): the rows upcomingSchedules listed, with the next_start read
-- and the slot after it; fires those still as read and due, in one statement.
-- :readSlots: each row's next_start as read (next_start_exact); :nextSlots: the slot after it (null: one-shot).
SELECT id, action FROM {{schema}}.fire_slots(:groupId, :taskIds::bigint[], :readSlots::timestamptz[], :nextSlots::timestamptz[], :now::timestamptz);

-- name: dueSchedules
-- The due schedules of a group, locked. SKIP LOCKED lets racing nodes split the work; a row
-- another node just advanced no longer matches once its lock is released, because the
-- condition is checked again on the newest version of the row. That is what makes each slot
-- fire once across the cluster.
-- For a cloned schedule with an overlap policy, its copies not ended yet, and whether one waits
-- (task_shed_parent_idx).
SELECT t.id, t.state_id, t.next_start, t.shed_period_id, t.shed_period_count, t.shed_clone, t.shed_cron, t.shed_tz,
       t.shed_anchor, t.shed_overlap, t.shed_missed, t.shed_catchup_max, coalesce(:now::timestamptz, now()) AS now,
       CASE WHEN t.shed_clone AND t.shed_overlap <> 'allow' THEN
         (SELECT count(*)::int FROM {{schema}}.task c
           WHERE c.shed_parent_id = t.id AND (c.state_id IN ('AW', 'AE', 'AC') OR c.live_worker_id IS NOT NULL))
       ELSE 0 END AS active_copies,
       t.shed_clone AND t.shed_overlap IN ('queue', 'cancel_previous')
         AND EXISTS (SELECT 1 FROM {{schema}}.task c WHERE c.shed_parent_id = t.id AND c.state_id = 'DR') AS waiting_copy
  FROM {{schema}}.task t
 WHERE group_id = :groupId
   AND (next_start IS NOT NULL OR shed_cron IS NOT NULL)
   AND (next_start <= coalesce(:now::timestamptz, now()) OR next_start IS NULL)
 ORDER BY next_start NULLS FIRST, id
 LIMIT :limit
   FOR UPDATE SKIP LOCKED;

-- name: markAdvancing
-- The scheduler's own writes keep a schedule's anchor (see task_schedule_rules).
SELECT set_config('pg_tasks.advancing', 'on', true);

-- name: cloneScheduled
-- shed_clone: a copy of each scheduled task, pointing back at it, with its recover policy,
-- timeout and retry settings, the user it runs as, its limits, heartbeat timeout and
-- concurrency key (migration 32: copies had dropped these), and the slot it stands for (shed_slot): queued (AW), or waiting in DR for earlier copies to end (the
-- overlap policies queue and cancel_previous). The copy has no schedule of its own, and its
-- parent's owner (not the node's role). A schedule catching up missed slots (shed_missed all)
-- lists its id once per slot, oldest first: the copies get ids in that order, and so are
-- claimed in slot order (same priority, same last_state_change, then id). With a key template
-- (shed_unique_key), each copy's unique_key is it for the copy's own slot; a copy whose key an
-- unended task holds is not made.
INSERT INTO {{schema}}.task (params, state_id, priority, group_id, command, cwd, shed_parent_id, recover_policy,
                             timeout, max_attempts, backoff_base, backoff_cap, retry_on, owner, unique_key, shed_slot,
                             run_as, memory_max, cpu_seconds_max, open_files_max, pids_max, cpu_max, heartbeat_timeout, concurrency_key)
SELECT t.params, c.state_id, t.priority, t.group_id, t.command, t.cwd, t.id, t.recover_policy,
       t.timeout, t.max_attempts, t.backoff_base, t.backoff_cap, t.retry_on, t.owner,
       {{schema}}.unique_key_for_slot(t.shed_unique_key, c.slot), c.slot,
       t.run_as, t.memory_max, t.cpu_seconds_max, t.open_files_max, t.pids_max, t.cpu_max, t.heartbeat_timeout, t.concurrency_key
  FROM {{schema}}.task t
  JOIN unnest(:taskIds::bigint[], :states::text[], :slots::timestamptz[]) WITH ORDINALITY AS c(id, state_id, slot, n) ON c.id = t.id
 ORDER BY c.n
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state_id IN ('DR', 'AW', 'AE', 'AC') DO NOTHING;

-- name: queueWaitingCopies
-- A copy left waiting (DR) by the queue or cancel_previous policy with nothing left to wait
-- for (its copies ended by a path that did not queue it): queued at the next slot.
UPDATE {{schema}}.task
   SET state_id = 'AW', worker_id = NULL
 WHERE shed_parent_id = ANY(:taskIds::bigint[]) AND state_id = 'DR';

-- name: cancelCopies
-- cancel_previous: the copies of these schedules that have not ended are cancelled (a waiting
-- one ends CC at once; an executing one has its process group killed).
UPDATE {{schema}}.task
   SET state_id = 'AC'
 WHERE shed_parent_id = ANY(:taskIds::bigint[]) AND state_id IN ('AW', 'AE');

-- name: advanceSchedules
-- One statement per batch: move next_start, re-queue (the seed's statement: AW, any worker),
-- count skipped slots (:skips: how many), or switch off a schedule the node cannot compute. A
-- task whose unique_key another unended task holds is not re-queued: its slot is skipped (the
-- re-queue would fail the batch on task_unique_key).
UPDATE {{schema}}.task t
   SET next_start = r.next_start,
       state_id = CASE WHEN r.requeue AND (t.unique_key IS NULL OR coalesce({{schema}}.unique_key_holder(t.unique_key), t.id) = t.id) THEN 'AW' ELSE t.state_id END,
       worker_id = CASE WHEN r.requeue AND (t.unique_key IS NULL OR coalesce({{schema}}.unique_key_holder(t.unique_key), t.id) = t.id) THEN NULL ELSE t.worker_id END,
       -- Capped at int's top: decades of missed seconds must not fail the fire (and stall it).
       shed_skip_count = least(t.shed_skip_count + r.skipped
                               + CASE WHEN r.requeue AND t.unique_key IS NOT NULL AND coalesce({{schema}}.unique_key_holder(t.unique_key), t.id) <> t.id THEN 1 ELSE 0 END, 2147483647),
       shed_cron = CASE WHEN r.disabled IS NULL THEN t.shed_cron ELSE NULL END,
       error = coalesce(r.disabled, t.error)
  FROM unnest(:taskIds::bigint[], :nextStarts::timestamptz[], :requeues::boolean[], :skips::int8[], :disabled::text[])
       AS r(id, next_start, requeue, skipped, disabled)
 WHERE t.id = r.id;

-- name: setSchedule
-- The schedule, then the run settings (:timeoutMs to :retryOn), the :overlap policy and the
-- :missed policy with its :catchupMax, each set where given (null: left as it is).
UPDATE {{schema}}.task
   SET next_start = :nextStart, shed_period_id = :periodId, shed_period_count = :periodCount, shed_cron = :cron, shed_tz = :tz, shed_clone = :clone,
       shed_overlap = coalesce(:overlap, shed_overlap),
       shed_missed = coalesce(:missed, shed_missed),
       shed_catchup_max = coalesce(:catchupMax, shed_catchup_max),
       timeout = coalesce(make_interval(secs => :timeoutMs::float8 / 1000), timeout),
       max_attempts = coalesce(:maxAttempts, max_attempts),
       backoff_base = coalesce(make_interval(secs => :backoffBaseMs::float8 / 1000), backoff_base),
       backoff_cap = coalesce(make_interval(secs => :backoffCapMs::float8 / 1000), backoff_cap),
       retry_on = coalesce(:retryOn, retry_on)
 WHERE id = :taskId
RETURNING *;

-- name: setCloneUniqueKey
-- A clone schedule's key template (shed_unique_key, migration 24): each copy's unique_key.
UPDATE {{schema}}.task SET shed_unique_key = :uniqueKey WHERE id = :taskId
RETURNING *;

-- name: clearSchedule
UPDATE {{schema}}.task
   SET next_start = NULL, shed_period_id = NULL, shed_period_count = NULL, shed_cron = NULL, shed_clone = false
 WHERE id = :taskId
RETURNING *;

-- name: listScheduled
SELECT * FROM {{schema}}.task
 WHERE (next_start IS NOT NULL OR shed_cron IS NOT NULL)
   AND (:groupId::int IS NULL OR group_id = :groupId)
 ORDER BY next_start NULLS FIRST, id
 LIMIT :limit;
