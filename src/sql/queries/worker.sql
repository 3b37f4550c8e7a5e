-- Runtime queries about workers and their leases. Time-based statements take $now, null
-- meaning the database's now(), so tests can move time without sleeping.

-- name: ensureWorker
-- $1 worker, $2 group
INSERT INTO {{schema}}.worker (id, group_id) VALUES ($1, $2)
ON CONFLICT (id) DO NOTHING;

-- name: lockWorker
-- Read the row under a lock, so that two nodes deciding to take it over decide in turn.
-- $1 worker, $2 recovery delay (seconds), $3 now or null
SELECT id, active, stop, node_name, lease_epoch, locked_until,
       -- milliseconds until a lapsed lease becomes recoverable: when a standby tries again
       (extract(epoch FROM locked_until + make_interval(secs => $2) - coalesce($3::timestamptz, now())) * 1000)::float8 AS recoverable_in_ms,
       (active AND locked_until > coalesce($3::timestamptz, now())) AS held,
       (active AND locked_until + make_interval(secs => $2) <= coalesce($3::timestamptz, now())) AS failed
  FROM {{schema}}.worker
 WHERE id = $1
   FOR UPDATE;

-- name: recoverWorker
SELECT {{schema}}.recover_worker_tasks($1);

-- name: endWorkerRuns
-- With the recovery of a failed worker, whatever the policy: its live runs are over (its
-- node fenced itself and killed their processes before its lease could lapse), so their
-- tasks may run again.
-- $1 worker
UPDATE {{schema}}.task_run
   SET finished = now(), end_reason = 'worker_failed', error = 'Worker failed'
 WHERE worker_id = $1 AND finished IS NULL;

-- name: takeLease
-- $1 worker, $2 lease (seconds), $3 now or null, $4 node name, $5 host, $6 pid, $7 group,
-- $8 max tasks
UPDATE {{schema}}.worker
   SET active = true,
       locked_until = coalesce($3::timestamptz, now()) + make_interval(secs => $2),
       lease_epoch = lease_epoch + 1,
       lease_taken = coalesce($3::timestamptz, now()),
       node_name = $4, host = $5, pid = $6, group_id = $7, max_task_count = $8, task_count = 0
 WHERE id = $1
RETURNING lease_epoch, stop;

-- name: renewLease
-- Renews only the term the node holds ($2). No row back = the lease is lost. The renewal
-- doubles as the node's safety resync at no extra statement: it says whether work is waiting
-- for the node, whether cancellations are pending (in case a notification was missed), and
-- which other workers have failed (active, lease lapsed past the recovery delay). It also
-- sends the node a ping on its own channel: if the ping does not come back, LISTEN is broken.
-- $1 worker, $2 lease epoch, $3 lease (seconds), $4 running tasks, $5 now or null, $6 group,
-- $7 recovery delay (seconds), $8 channel, $9 ping payload
UPDATE {{schema}}.worker w
   SET locked_until = coalesce($5::timestamptz, now()) + make_interval(secs => $3),
       task_count = $4
 WHERE w.id = $1 AND w.lease_epoch = $2 AND w.active
RETURNING w.stop,
  -- Two EXISTS, one per waiting-task index: tasks pinned to other workers are not read.
  (EXISTS (SELECT 1 FROM {{schema}}.task t
            WHERE t.state_id = 'AW' AND t.group_id = $6 AND t.worker_id IS NULL AND t.run_after IS NULL)
   OR EXISTS (SELECT 1 FROM {{schema}}.task t
               WHERE t.state_id = 'AW' AND t.group_id = $6 AND t.worker_id = $1 AND t.run_after IS NULL)) AS has_waiting,
  EXISTS (SELECT 1 FROM {{schema}}.task_run r JOIN {{schema}}.task t ON t.id = r.task_id
           WHERE r.worker_id = $1 AND r.lease_epoch = $2 AND r.finished IS NULL AND t.state_id = 'AC') AS has_cancels,
  ARRAY(SELECT f.id FROM {{schema}}.worker f
         WHERE f.active AND f.id <> $1
           AND f.locked_until + make_interval(secs => $7) <= coalesce($5::timestamptz, now())) AS failed_workers,
  -- Live runs of this term that started a while ago: the node checks it has a process for
  -- each (a claim whose reply was lost on the wire would leave one without).
  (SELECT coalesce(json_agg(json_build_object('id', r.task_id, 'attempt', r.attempt)), '[]')
     FROM {{schema}}.task_run r
    WHERE r.worker_id = $1 AND r.lease_epoch = $2 AND r.finished IS NULL
      AND r.started <= coalesce($5::timestamptz, now()) - make_interval(secs => $3 / 2)) AS owned,
  pg_notify($8, $9) IS NULL AS pinged;

-- name: failOrphanRuns
-- Live runs of this worker's terms up to $2 that no node answers for: a claim that committed
-- while its reply was lost (a cut connection), and the node holding the term ended cleanly
-- without ever hearing of it. Called when a term ends cleanly (every process of it is gone
-- by then) and when a term begins without a recovery. They end CF, 'lost', so they can run
-- again by the user's or a retry's hand.
-- $1 worker, $2 lease epoch
WITH run AS (
  UPDATE {{schema}}.task_run
     SET finished = now(), end_reason = 'lost',
         error = 'Lost: the node that claimed it never ran it (the claim reply was lost)'
   WHERE worker_id = $1 AND lease_epoch <= $2 AND finished IS NULL
  RETURNING task_id, attempt, error
)
UPDATE {{schema}}.task t
   SET state_id = 'CF', end_reason = 'lost', error = run.error, finished = now()
  FROM run
 WHERE t.id = run.task_id AND t.attempt = run.attempt AND t.state_id IN ('AE', 'AC');

-- name: releaseLease
-- $1 worker, $2 lease epoch, $3 clear the stop code (the node fulfilled a stop request)
UPDATE {{schema}}.worker
   SET active = false, locked_until = now(), task_count = 0,
       stop = CASE WHEN $3::boolean THEN 0 ELSE stop END
 WHERE id = $1 AND lease_epoch = $2;

-- name: readWorker
SELECT * FROM {{schema}}.worker WHERE id = $1;

-- name: listWorkers
-- $1 recovery delay (seconds), $2 lease (seconds): a standby seen within a lease is waiting
SELECT id, group_id, node_name, host, pid, task_count, max_task_count, stop, active, locked_until, lease_epoch, lease_taken,
       CASE WHEN standby_seen > now() - make_interval(secs => $2) THEN standby_node END AS standby,
       CASE
         WHEN NOT active AND standby_seen > now() - make_interval(secs => $2) THEN 'standby'
         WHEN NOT active THEN 'stopped'
         WHEN locked_until + make_interval(secs => $1) <= now() THEN 'failed'
         WHEN locked_until <= now() THEN 'late'
         WHEN stop > 0 THEN 'stopping'
         ELSE 'ok'
       END AS status
  FROM {{schema}}.worker
 ORDER BY id;

-- name: setWorkerStop
-- $1 worker, $2 stop code
UPDATE {{schema}}.worker SET stop = $2 WHERE id = $1
RETURNING *;

-- name: lockFailedWorker
-- A failed worker, locked for its recovery; nothing if another node is recovering it (SKIP
-- LOCKED) or has already (active is false by then, or a new lease was taken).
-- $1 worker, $2 recovery delay (seconds), $3 now or null
SELECT id, node_name, lease_epoch
  FROM {{schema}}.worker
 WHERE id = $1 AND active AND locked_until + make_interval(secs => $2) <= coalesce($3::timestamptz, now())
   FOR UPDATE SKIP LOCKED;

-- name: markRecovered
-- After recover_worker_tasks: the worker is no longer active, and the new term (epoch + 1)
-- fences off the node that held it, should it come back.
UPDATE {{schema}}.worker
   SET active = false, task_count = 0, lease_epoch = lease_epoch + 1
 WHERE id = $1;

-- name: markStandby
-- $1 worker, $2 node name
UPDATE {{schema}}.worker SET standby_node = $2, standby_seen = now() WHERE id = $1;
