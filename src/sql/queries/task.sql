-- Runtime queries about tasks. Each "-- name:" block is one statement, loaded by
-- src/db/queries.ts; values are always bound parameters.

-- name: claimTasks
-- The node's only claim: as many waiting tasks of its group as it has free slots, smallest
-- priority first, then oldest; rows another node is claiming are skipped, not waited on.
-- Tasks any worker may run and tasks pinned to this worker are read from their own indexes
-- (each its head, in order) and merged: tasks pinned to other workers are never read. Up to
-- $3 rows of the branch that loses the merge stay locked until this statement commits.
-- The EXISTS makes the claim conditional on the lease term the node holds ($4).
-- $1 group, $2 worker, $3 free slots, $4 lease epoch, $5 node name
WITH term AS (
  SELECT EXISTS (SELECT 1 FROM {{schema}}.worker w
                  WHERE w.id = $2 AND w.lease_epoch = $4 AND w.active AND w.locked_until > now()) AS held
), any_worker AS (
  SELECT id, priority, last_state_change
    FROM {{schema}}.task
   WHERE state_id = 'AW' AND group_id = $1 AND worker_id IS NULL
     AND (SELECT held FROM term)
   ORDER BY priority, last_state_change, id
   LIMIT $3
   FOR UPDATE SKIP LOCKED
), pinned AS (
  SELECT id, priority, last_state_change
    FROM {{schema}}.task
   WHERE state_id = 'AW' AND group_id = $1 AND worker_id = $2
     AND (SELECT held FROM term)
   ORDER BY priority, last_state_change, id
   LIMIT $3
   FOR UPDATE SKIP LOCKED
), picked AS (
  SELECT id FROM (SELECT * FROM any_worker UNION ALL SELECT * FROM pinned) c
   ORDER BY priority, last_state_change, id
   LIMIT $3
)
UPDATE {{schema}}.task t
   SET state_id = 'AE', worker_id = $2, lease_epoch = $4, node_name = $5, started = now(),
       finished = NULL, exit_code = NULL, exit_signal = NULL, pid = NULL, output = NULL
  FROM picked
 WHERE t.id = picked.id
RETURNING t.id, t.command, t.cwd, t.params, t.priority, t.last_state_change;

-- name: recordPids
-- $1 worker, $2 lease epoch, $3 task ids, $4 pids
UPDATE {{schema}}.task t
   SET pid = r.pid
  FROM unnest($3::bigint[], $4::int[]) AS r(id, pid)
 WHERE t.id = r.id AND t.worker_id = $1 AND t.lease_epoch = $2 AND t.state_id IN ('AE', 'AC');

-- name: finishTasks
-- Writes the results of ended processes, one statement per batch. Conditional on the
-- ownership still holding: a node that lost its lease changes nothing.
-- $1 worker, $2 lease epoch, then one array per column
UPDATE {{schema}}.task t
   SET state_id = r.state_id, exit_code = r.exit_code, exit_signal = r.exit_signal,
       error = r.error, output = r.output, finished = now()
  FROM unnest($3::bigint[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[])
       AS r(id, state_id, exit_code, exit_signal, error, output)
 WHERE t.id = r.id AND t.worker_id = $1 AND t.lease_epoch = $2 AND t.state_id IN ('AE', 'AC')
RETURNING t.id;

-- name: cancelRequests
-- $1 worker, $2 lease epoch
SELECT id FROM {{schema}}.task
 WHERE worker_id = $1 AND lease_epoch = $2 AND state_id = 'AC';

-- name: insertTask
-- $1 command, $2 group, $3 priority, $4 state, $5 cwd, $6 params, $7 worker, $8 recover policy
INSERT INTO {{schema}}.task (command, group_id, priority, state_id, cwd, params, worker_id, recover_policy)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING *;

-- name: queueTask
-- The seed's re-queue: any worker of the group, from DR or a C* state.
UPDATE {{schema}}.task SET state_id = 'AW', worker_id = NULL
 WHERE id = $1 AND (state_id = 'DR' OR state_id LIKE 'C%')
RETURNING *;

-- name: cancelTask
UPDATE {{schema}}.task SET state_id = 'AC'
 WHERE id = $1 AND state_id LIKE 'A%'
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
