-- Live output (migration 11): what runs print, written by the node in batches, read by
-- `pg-tasks logs`, the client and the dashboard.

-- name: appendOutput
-- One flush of the node's output writer, for all its runs at once: the new chunks, then the
-- older chunks of runs past --output-keep deleted (each run's lowest seq kept), then one
-- notification naming the tasks (up to 100; none: "look again"). A chunk of a task deleted
-- meanwhile is not written.
-- $1 task ids, $2 attempts, $3 seqs, $4 byte positions, $5 data (one element per chunk);
-- $6 task ids, $7 attempts, $8 lowest seq kept (one element per run trimmed);
-- $9 the channel, $10 the task ids to name (null: more than 100)
WITH added AS (
  INSERT INTO {{schema}}.task_output (task_id, attempt, seq, pos, data)
  SELECT c.task_id, c.attempt, c.seq, c.pos, c.data
    FROM unnest($1::bigint[], $2::int[], $3::int[], $4::bigint[], $5::bytea[]) AS c(task_id, attempt, seq, pos, data)
   WHERE EXISTS (SELECT 1 FROM {{schema}}.task t WHERE t.id = c.task_id)
  ON CONFLICT DO NOTHING
  RETURNING 1
), trimmed AS (
  DELETE FROM {{schema}}.task_output o
   USING unnest($6::bigint[], $7::int[], $8::int[]) AS k(task_id, attempt, keep_from)
   WHERE o.task_id = k.task_id AND o.attempt = k.attempt AND o.seq < k.keep_from
  RETURNING 1
)
SELECT (SELECT count(*) FROM added)::int AS added, (SELECT count(*) FROM trimmed)::int AS trimmed,
       {{schema}}.notify_event($9, 'output', p_ids => $10::bigint[]);

-- name: readOutput
-- A run's chunks after seq $3 (−1: from the first kept), in order, at most $4 of them.
-- $1 task id, $2 attempt, $3 after seq, $4 limit
SELECT seq, pos, at, data
  FROM {{schema}}.task_output
 WHERE task_id = $1 AND attempt = $2 AND seq > $3
 ORDER BY seq
 LIMIT $4;

-- name: outputRun
-- Which run `logs` shows: run $2 of task $1, or its latest (null); live: its process may
-- still be running (the task row's live-run mark names it).
-- $1 task id, $2 attempt or null
SELECT t.id, t.group_id, t.attempt AS latest,
       coalesce($2::int, t.attempt) AS attempt,
       (t.live_worker_id IS NOT NULL AND t.attempt = coalesce($2::int, t.attempt)) AS live
  FROM {{schema}}.task t
 WHERE t.id = $1;
