-- Live output (migration 11): what runs print, written by the node in batches, read by
-- `pg-tasks logs`, the client and the dashboard.

-- name: appendOutput
-- One flush of the node's output writer, for all its runs at once: the new chunks, then the
-- older chunks of runs past --output-keep deleted (each run's lowest seq kept), then one
-- notification naming the tasks (up to 100; none: "look again"). A chunk of a task deleted
-- meanwhile is not written.
-- :taskIds to :data have one element per chunk; :trimTaskIds, :trimAttempts and :keepFrom (the
-- lowest seq kept) one per run trimmed; :notifyIds the task ids to name (null: more than 100).
WITH added AS (
  INSERT INTO {{schema}}.task_output (task_id, attempt, seq, pos, data)
  SELECT c.task_id, c.attempt, c.seq, c.pos, c.data
    FROM unnest(:taskIds::bigint[], :attempts::int[], :seqs::int[], :positions::bigint[], :data::bytea[]) AS c(task_id, attempt, seq, pos, data)
   WHERE EXISTS (SELECT 1 FROM {{schema}}.task t WHERE t.id = c.task_id)
  ON CONFLICT DO NOTHING
  RETURNING 1
), trimmed AS (
  DELETE FROM {{schema}}.task_output o
   USING unnest(:trimTaskIds::bigint[], :trimAttempts::int[], :keepFrom::int[]) AS k(task_id, attempt, keep_from)
   WHERE o.task_id = k.task_id AND o.attempt = k.attempt AND o.seq < k.keep_from
  RETURNING 1
)
SELECT (SELECT count(*) FROM added)::int AS added, (SELECT count(*) FROM trimmed)::int AS trimmed,
       {{schema}}.notify_event(:channel, 'output', p_ids => :notifyIds::bigint[]);

-- name: readOutput
-- A run's chunks after seq :afterSeq (−1: from the first kept), in order, at most :limit of them.
SELECT seq, pos, at, data
  FROM {{schema}}.task_output
 WHERE task_id = :taskId AND attempt = :attempt AND seq > :afterSeq
 ORDER BY seq
 LIMIT :limit;

-- name: outputRun
-- Which run `logs` shows: run :attempt of task :taskId, or its latest (null); live: its process may
-- still be running (the task row's live-run mark names it).
SELECT t.id, t.group_id, t.attempt AS latest,
       coalesce(:attempt::int, t.attempt) AS attempt,
       (t.live_worker_id IS NOT NULL AND t.attempt = coalesce(:attempt::int, t.attempt)) AS live
  FROM {{schema}}.task t
 WHERE t.id = :taskId;
