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

-- name: markRecovering
-- The recovery's own writes: a task it queues again is not refused by the allowlist trigger
-- (migration 14), which would stop the recovery of every other task; the claim refuses it.
SELECT set_config('pg_tasks.recovering', 'on', true);

-- name: recoverWorker
SELECT {{schema}}.recover_worker_tasks($1);

-- name: endWorkerRuns
-- With the recovery of a failed worker, whatever the policy: its live runs are over (its
-- node fenced itself and killed their processes before its lease could lapse), so their
-- tasks may run again: each gets its task_run row, and its live-run mark is cleared.
-- $1 worker
WITH live AS (
  SELECT id, live_epoch FROM {{schema}}.task WHERE live_worker_id = $1
), ended AS (
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL
    FROM live
   WHERE t.id = live.id AND t.live_worker_id = $1
  RETURNING t.id, t.attempt, t.node_name, t.pid, t.started, live.live_epoch
)
INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, finished, end_reason, error)
SELECT id, attempt, $1, live_epoch, node_name, pid, coalesce(started, now()), now(), 'worker_failed', 'Worker failed'
  FROM ended
ON CONFLICT (task_id, attempt) DO NOTHING;

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
            WHERE t.state_id = 'AW' AND t.group_id = $6 AND t.worker_id IS NULL AND t.run_after IS NULL AND t.live_worker_id IS NULL AND t.deps_left = 0)
   OR EXISTS (SELECT 1 FROM {{schema}}.task t
               WHERE t.state_id = 'AW' AND t.group_id = $6 AND t.worker_id = $1 AND t.run_after IS NULL AND t.live_worker_id IS NULL AND t.deps_left = 0)) AS has_waiting,
  EXISTS (SELECT 1 FROM {{schema}}.task t
           WHERE t.live_worker_id = $1 AND t.live_epoch = $2 AND t.state_id = 'AC') AS has_cancels,
  ARRAY(SELECT f.id FROM {{schema}}.worker f
         WHERE f.active AND f.id <> $1
           AND f.locked_until + make_interval(secs => $7) <= coalesce($5::timestamptz, now())) AS failed_workers,
  -- Live runs of this term that started a while ago: the node checks it has a process for
  -- each (a claim whose reply was lost on the wire would leave one without).
  (SELECT coalesce(json_agg(json_build_object('id', t.id, 'attempt', t.attempt)), '[]')
     FROM {{schema}}.task t
    WHERE t.live_worker_id = $1 AND t.live_epoch = $2
      AND t.started <= coalesce($5::timestamptz, now()) - make_interval(secs => $3 / 2)) AS owned,
  pg_notify($8, $9) IS NULL AS pinged;

-- name: failOrphanRuns
-- Live runs of this worker's terms up to $2 that no node answers for: a claim that committed
-- while its reply was lost (a cut connection), and the node holding the term ended cleanly
-- without ever hearing of it. Called when a term ends cleanly (every process of it is gone
-- by then) and when a term begins without a recovery. Each ends 'lost', like a lost run the
-- node notices itself: an executing task retries if its retry_on allows (after its backoff,
-- on any worker), else ends CF; one being cancelled ends CC.
-- $1 worker, $2 lease epoch
WITH orphan AS (
  SELECT t.id, t.live_epoch, CASE WHEN t.state_id = 'AE' THEN {{schema}}.retry_delay(t, 'lost') END AS delay
    FROM {{schema}}.task t
   WHERE t.live_worker_id = $1 AND t.live_epoch <= $2
), ended AS (
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL,
         state_id   = CASE WHEN t.state_id = 'AE' AND o.delay IS NOT NULL THEN 'AW'
                           WHEN t.state_id = 'AE' THEN 'CF' WHEN t.state_id = 'AC' THEN 'CC' ELSE t.state_id END,
         run_after  = CASE WHEN t.state_id = 'AE' AND o.delay IS NOT NULL THEN now() + o.delay ELSE t.run_after END,
         worker_id  = CASE WHEN t.state_id = 'AE' AND o.delay IS NOT NULL THEN NULL ELSE t.worker_id END,
         end_reason = CASE WHEN t.state_id = 'AE' THEN 'lost' WHEN t.state_id = 'AC' THEN 'cancelled' ELSE t.end_reason END,
         error      = CASE WHEN t.state_id = 'AE' THEN 'Lost: the node that claimed it never ran it (the claim reply was lost)'
                           WHEN t.state_id = 'AC' THEN 'Cancelled' ELSE t.error END,
         finished   = CASE WHEN t.state_id IN ('AE', 'AC') THEN now() ELSE t.finished END
    FROM orphan o
   WHERE t.id = o.id AND t.live_worker_id = $1 AND t.live_epoch <= $2
  RETURNING t.id, t.attempt, t.node_name, t.started, o.live_epoch
)
INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason, error)
SELECT e.id, e.attempt, $1, e.live_epoch, e.node_name, coalesce(e.started, now()), now(), 'lost',
       'Lost: the node that claimed it never ran it (the claim reply was lost)'
  FROM ended e
ON CONFLICT (task_id, attempt) DO NOTHING;

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
