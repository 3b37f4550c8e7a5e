-- Retention: what prune deletes, in small batches (each its own short transaction) so that no
-- statement holds many locks or runs long while nodes work.

-- name: pruneTasks
-- Up to :limit ended tasks (CS, CF, CC) that ended before now − :olderThanMs ms, of group :groupId (null: all),
-- oldest ids first. Kept whatever their age: a schedule (it fires again), a task whose process
-- still lives, and a prerequisite that a waiting or draft task still names (deleting it would
-- cancel that task). Rows another statement holds are skipped, not waited for. Their runs go
-- with them (task_delete_runs).
WITH doomed AS (
  SELECT t.id
    FROM {{schema}}.task t
   WHERE t.state_id IN ('CS', 'CF', 'CC')
     AND coalesce(t.finished, t.last_state_change) < now() - make_interval(secs => :olderThanMs::float8 / 1000)
     AND (:groupId::int IS NULL OR t.group_id = :groupId)
     AND t.next_start IS NULL AND t.shed_cron IS NULL
     AND t.live_worker_id IS NULL
     AND NOT EXISTS (SELECT 1 FROM {{schema}}.task d
                      WHERE d.depends_on @> ARRAY[t.id] AND d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR'))
   ORDER BY t.id
   LIMIT :limit
     FOR UPDATE SKIP LOCKED
)
DELETE FROM {{schema}}.task t USING doomed WHERE t.id = doomed.id AND NOT {{schema}}.is_named_prerequisite(t.id);

-- name: pruneRuns
-- Up to :limit runs that ended before now − :olderThanMs ms, of the tasks that stay (a schedule's, a task
-- run again and again), group :groupId (null: all); a task's latest run is kept, as the task row
-- still shows it.
WITH doomed AS (
  SELECT r.task_id, r.attempt
    FROM {{schema}}.task_run r
    JOIN {{schema}}.task t ON t.id = r.task_id
   WHERE r.finished < now() - make_interval(secs => :olderThanMs::float8 / 1000)
     AND r.attempt < t.attempt
     AND (:groupId::int IS NULL OR t.group_id = :groupId)
   LIMIT :limit
)
DELETE FROM {{schema}}.task_run r USING doomed WHERE r.task_id = doomed.task_id AND r.attempt = doomed.attempt;

-- The nodes' own pass (migration 10). One node at a time: the one whose UPDATE moves next_at.

-- name: startRetention
-- :everyMs between passes. The node that wins gets the row: the pass's token
-- (last_started, as text), where the runs scan goes on from, and what is in force; the others
-- get nothing. next_at moves at least a minute ahead while the pass runs (holdRetention keeps
-- it there); finishRetention sets the real one. Timestamps go out and back as text: a
-- JavaScript Date keeps milliseconds, the cursor needs microseconds.
WITH k AS (
  -- The shortest and the longest run retention in force (30 days: a group with no row): the
  -- scan's cutoff, and how far its saved cursor may go (runs newer than that may still be
  -- deleted for a group that keeps them longer, so they are read again).
  SELECT extract(epoch FROM least(interval '30 days', min(g.keep_runs))) * 1000 AS min_keep_ms,
         now() - greatest(interval '30 days', max(g.keep_runs)) AS settled
    FROM {{schema}}.task_group g
)
UPDATE {{schema}}.maintenance m
   SET next_at = now() + greatest(make_interval(secs => :everyMs::float8 / 1000), interval '1 minute'),
       node_name = :nodeName, last_started = now()
  FROM k
 WHERE m.name = 'retention' AND m.next_at <= now()
RETURNING m.last_started::text AS token, m.rerun_since::text AS rerun_since, k.settled::text AS settled,
          k.min_keep_ms::float8 AS min_keep_runs_ms,
          CASE WHEN m.runs_cursor_finished > k.settled THEN k.settled ELSE m.runs_cursor_finished END::text AS cursor_finished,
          CASE WHEN m.runs_cursor_finished > k.settled THEN NULL ELSE m.runs_cursor_task END AS cursor_task,
          CASE WHEN m.runs_cursor_finished > k.settled THEN NULL ELSE m.runs_cursor_attempt END AS cursor_attempt,
          ARRAY(SELECT g.id FROM {{schema}}.task_group g WHERE g.keep_ended IS NOT NULL ORDER BY g.id) AS keep_ended_groups;

-- name: pruneEndedBatch
-- Up to :limit tasks of group :groupId that ended more than its keep_ended ago, oldest first (what is
-- kept whatever its age: as in pruneTasks). Served by task_ended_idx.
WITH doomed AS (
  SELECT t.id
    FROM {{schema}}.task t
   WHERE t.group_id = :groupId AND t.state_id IN ('CS', 'CF', 'CC')
     AND coalesce(t.finished, t.last_state_change) < now() - (SELECT g.keep_ended FROM {{schema}}.task_group g WHERE g.id = :groupId)
     AND t.next_start IS NULL AND t.shed_cron IS NULL
     AND t.live_worker_id IS NULL
     AND NOT EXISTS (SELECT 1 FROM {{schema}}.task d
                      WHERE d.depends_on @> ARRAY[t.id] AND d.depends_on IS NOT NULL AND d.state_id IN ('AW', 'DR'))
   ORDER BY coalesce(t.finished, t.last_state_change)
   LIMIT :limit
     FOR UPDATE SKIP LOCKED
)
DELETE FROM {{schema}}.task t USING doomed WHERE t.id = doomed.id AND NOT {{schema}}.is_named_prerequisite(t.id);

-- name: pruneRunsBatch
-- The next :limit runs by age after the cursor (:cursorFinished..:cursorAttempt) that ended more than :olderThanMs ms ago; of these,
-- the older runs of tasks whose group's keep_runs (30 days with no row; null keeps them) has
-- passed are deleted. Returns how many were deleted and read, and the new cursor.
WITH scanned AS (
  SELECT r.task_id, r.attempt, r.finished
    FROM {{schema}}.task_run r
   WHERE r.finished < now() - make_interval(secs => :olderThanMs::float8 / 1000)
     AND (r.finished, r.task_id, r.attempt) > (coalesce(:cursorFinished::timestamptz, '-infinity'), coalesce(:cursorTask::bigint, 0), coalesce(:cursorAttempt::int, 0))
   ORDER BY r.finished, r.task_id, r.attempt
   LIMIT :limit
), doomed AS (
  SELECT s.task_id, s.attempt
    FROM scanned s
    JOIN {{schema}}.task t ON t.id = s.task_id
    LEFT JOIN {{schema}}.task_group g ON g.id = t.group_id
   WHERE s.attempt < t.attempt
     AND s.finished < now() - CASE WHEN g.id IS NULL THEN interval '30 days' ELSE g.keep_runs END
), gone AS (
  DELETE FROM {{schema}}.task_run r USING doomed d WHERE r.task_id = d.task_id AND r.attempt = d.attempt
  RETURNING 1
), last AS (
  SELECT finished, task_id, attempt FROM scanned ORDER BY finished DESC, task_id DESC, attempt DESC LIMIT 1
)
SELECT (SELECT count(*) FROM gone)::int AS deleted, (SELECT count(*) FROM scanned)::int AS scanned,
       last.finished::text AS finished, last.task_id, last.attempt
  FROM (SELECT 1) one LEFT JOIN last ON true;

-- name: pruneRerunRuns
-- Runs behind the cursor that became "older runs" since: their task ran again after the scan
-- had passed them (a task re-run after more than its keep_runs). Found from the runs that
-- ended since the last finished pass began (:since), which are few.
WITH rerun AS (
  SELECT DISTINCT r.task_id FROM {{schema}}.task_run r WHERE r.finished >= :since::timestamptz AND r.attempt > 1
), doomed AS (
  SELECT o.task_id, o.attempt
    FROM rerun x
    JOIN {{schema}}.task t ON t.id = x.task_id
    LEFT JOIN {{schema}}.task_group g ON g.id = t.group_id
    JOIN {{schema}}.task_run o ON o.task_id = x.task_id AND o.attempt < t.attempt
   WHERE o.finished <= :cursorFinished::timestamptz
     AND o.finished < now() - CASE WHEN g.id IS NULL THEN interval '30 days' ELSE g.keep_runs END
)
DELETE FROM {{schema}}.task_run r USING doomed d WHERE r.task_id = d.task_id AND r.attempt = d.attempt;

-- name: holdRetention
-- A pass that runs long keeps the others off: next_at stays a minute ahead while it works (a
-- node that dies in a pass holds it back a minute at most).
UPDATE {{schema}}.maintenance
   SET next_at = greatest(next_at, now() + interval '1 minute')
 WHERE name = 'retention' AND node_name = :nodeName AND last_started = :token::timestamptz;

-- name: finishRetention
-- Only the pass that holds the row (node and token) writes its end: the cursor it reached
-- (kept no later than :settled, see startRetention), and where the next pass looks for re-runs (this
-- pass's start, less a minute: a run's finished is its statement's start, not its commit).
-- :tasks and :runs: what it deleted; :cursorFinished (text; null: none read yet), :cursorTask and
-- :cursorAttempt: the runs cursor; :nextInMs: until the next pass.
UPDATE {{schema}}.maintenance
   SET last_finished = now(), last_tasks = :tasks, last_runs = :runs, next_at = now() + make_interval(secs => :nextInMs::float8 / 1000),
       runs_cursor_finished = CASE WHEN :cursorFinished::text IS NULL THEN runs_cursor_finished
                                   WHEN :cursorFinished::timestamptz > :settled::timestamptz THEN :settled::timestamptz ELSE :cursorFinished::timestamptz END,
       runs_cursor_task     = CASE WHEN :cursorFinished::text IS NULL THEN runs_cursor_task
                                   WHEN :cursorFinished::timestamptz > :settled::timestamptz THEN NULL ELSE :cursorTask::bigint END,
       runs_cursor_attempt  = CASE WHEN :cursorFinished::text IS NULL THEN runs_cursor_attempt
                                   WHEN :cursorFinished::timestamptz > :settled::timestamptz THEN NULL ELSE :cursorAttempt::int END,
       rerun_since = last_started - interval '1 minute'
 WHERE name = 'retention' AND node_name = :nodeName AND last_started = :token::timestamptz;
