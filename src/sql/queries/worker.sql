-- Runtime queries about workers and their leases. Time-based statements take :now, null
-- meaning the database's now(), so tests can move time without sleeping.

-- name: ensureWorker
INSERT INTO {{schema}}.worker (id, group_id) VALUES (:workerId, :groupId)
ON CONFLICT (id) DO NOTHING;

-- name: lockWorker
-- Read the row under a lock, so that two nodes deciding to take it over decide in turn.
-- lock_gone: the holder held the worker's advisory lock (lock_pid) and holds it no more: its
-- session has ended (the node died, or its connection was cut), so a standby takes the next
-- term at once instead of waiting for the lease to lapse.
SELECT id, active, stop, node_name, lease_epoch, locked_until,
       -- milliseconds until a lapsed lease becomes recoverable: when a standby tries again
       (extract(epoch FROM locked_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 AS recoverable_in_ms,
       (active AND locked_until > coalesce(:now::timestamptz, now())) AS held,
       (active AND locked_until + make_interval(secs => :recoveryDelaySeconds) <= coalesce(:now::timestamptz, now())) AS failed,
       (active AND lock_pid IS NOT NULL AND NOT {{schema}}.worker_lock_held(id, lock_pid)) AS lock_gone
  FROM {{schema}}.worker
 WHERE id = :workerId
   FOR UPDATE;

-- name: markRecovering
-- The recovery's own writes: a task it queues again is not refused by the allowlist trigger
-- (migration 14), which would stop the recovery of every other task; the claim refuses it.
SELECT set_config('pg_tasks.recovering', 'on', true);

-- name: recoverWorker
-- The recover policy, on the runs of worker :workerId's terms up to :epoch.
SELECT {{schema}}.recover_worker_tasks(:workerId, :epoch::bigint);

-- name: endWorkerRuns
-- With the recovery of a worker's old terms, whatever the policy: their live runs are over
-- (the node fenced itself and killed their processes before its lease could lapse), so their
-- tasks may run again: each gets its task_run row, and its live-run mark is cleared. Runs of
-- a newer term of the worker are not touched.
WITH live AS (
  SELECT id, live_epoch FROM {{schema}}.task WHERE live_worker_id = :workerId AND live_epoch <= :epoch
), ended AS (
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL
    FROM live
   WHERE t.id = live.id AND t.live_worker_id = :workerId AND t.live_epoch <= :epoch
  RETURNING t.id, t.attempt, t.node_name, t.pid, t.started, live.live_epoch
)
INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, pid, started, finished, end_reason, error)
SELECT id, attempt, :workerId, live_epoch, node_name, pid, coalesce(started, now()), now(), 'worker_failed', 'Worker failed'
  FROM ended
ON CONFLICT (task_id, attempt) DO NOTHING;

-- name: takeLease
-- A new term. If the row was still active, the term it ends did not end cleanly: its runs are
-- left to recovery, due once its locked_until + the recovery delay has passed (old_epoch,
-- old_until; see recoverOldTerms). old_due_in_ms says when, in database time.
UPDATE {{schema}}.worker
   SET old_epoch = CASE WHEN active THEN lease_epoch ELSE old_epoch END,
       old_until = CASE WHEN active THEN greatest(old_until, locked_until) ELSE old_until END,
       active = true,
       locked_until = coalesce(:now::timestamptz, now()) + make_interval(secs => :leaseSeconds),
       lease_epoch = lease_epoch + 1,
       lease_taken = coalesce(:now::timestamptz, now()),
       node_name = :nodeName, host = :host, pid = :pid, group_id = :groupId, max_task_count = :maxTasks, task_count = 0,
       lock_pid = :lockPid, timeline = coalesce(:timeline::int, timeline)
 WHERE id = :workerId
-- (RETURNING sees the new values: old_until as just set.)
RETURNING lease_epoch, stop, old_epoch,
          (extract(epoch FROM old_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 AS old_due_in_ms;

-- name: renewLease
-- Renews only the term the node holds (:epoch). No row back = the lease is lost. The renewal
-- doubles as the node's safety resync at no extra statement: it says whether work is waiting
-- for the node, whether cancellations are pending (in case a notification was missed), and
-- when each worker that may need recovering becomes due (watch: see RecoveryWatch). It also
-- sends the node a ping on its own channel: if the ping does not come back, LISTEN is broken.
-- The ping carries the lease too: other nodes put off their watch of this worker by it.
UPDATE {{schema}}.worker w
   SET locked_until = coalesce(:now::timestamptz, now()) + make_interval(secs => :leaseSeconds),
       task_count = :taskCount, lock_pid = :lockPid, timeline = coalesce(:timeline::int, w.timeline)
 WHERE w.id = :workerId AND w.lease_epoch = :epoch AND w.active
RETURNING w.stop,
  -- Two EXISTS, one per waiting-task index: tasks pinned to other workers are not read.
  (EXISTS (SELECT 1 FROM {{schema}}.task t
            WHERE t.state_id = 'AW' AND t.group_id = :groupId AND t.worker_id IS NULL AND t.run_after IS NULL AND t.live_worker_id IS NULL AND t.deps_left = 0)
   OR EXISTS (SELECT 1 FROM {{schema}}.task t
               WHERE t.state_id = 'AW' AND t.group_id = :groupId AND t.worker_id = :workerId AND t.run_after IS NULL AND t.live_worker_id IS NULL AND t.deps_left = 0)) AS has_waiting,
  EXISTS (SELECT 1 FROM {{schema}}.task t
           WHERE t.live_worker_id = :workerId AND t.live_epoch = :epoch AND t.state_id = 'AC') AS has_cancels,
  -- Milliseconds (database time) until each other active worker's lease has lapsed past the
  -- recovery delay (lapse), and until a worker's old terms are due (old; this one's too): the
  -- node arms a timer for each, and a renewal's ping puts off the lapse. Negative: due now.
  (SELECT coalesce(json_agg(json_build_object(
            'id', f.id,
            'lapse', CASE WHEN f.active AND f.id <> :workerId
                     THEN (extract(epoch FROM f.locked_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 END,
            'old', CASE WHEN f.old_epoch IS NOT NULL
                   THEN (extract(epoch FROM f.old_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 END)), '[]')
     FROM {{schema}}.worker f
    WHERE (f.active AND f.id <> :workerId) OR f.old_epoch IS NOT NULL) AS watch,
  -- Live runs of this term that started a while ago: the node checks it has a process for
  -- each (a claim whose reply was lost on the wire would leave one without).
  (SELECT coalesce(json_agg(json_build_object('id', t.id, 'attempt', t.attempt)), '[]')
     FROM {{schema}}.task t
    WHERE t.live_worker_id = :workerId AND t.live_epoch = :epoch
      AND t.started <= coalesce(:now::timestamptz, now()) - make_interval(secs => :leaseSeconds / 2)) AS owned,
  {{schema}}.notify_event(:channel, 'ping', p_worker => :workerId, p_epoch => :epoch, p_seq => :ping, p_lease => :leaseSeconds) IS NULL AS pinged;

-- name: failOrphanRuns
-- Live runs of this worker's terms up to :epoch that no node answers for: a claim that committed
-- while its reply was lost (a cut connection), and the node holding the term ended cleanly
-- without ever hearing of it. Called when a term ends cleanly (every process of it is gone
-- by then) and when a term begins without a recovery. Each is a lost claim, like one the node
-- notices itself (finishRuns): not an attempt. Its task_run row says 'lost_claim'; an
-- executing task is queued again at once (AW, no run_after), pinned as the claim was, and
-- lost_claims counts it; one being cancelled ends CC. Runs of old terms awaiting their
-- recovery (up to old_epoch) are not orphans: their node may still be running them.
WITH orphan AS (
  SELECT t.id, t.live_epoch
    FROM {{schema}}.task t
   WHERE t.live_worker_id = :workerId AND t.live_epoch <= :epoch
     AND t.live_epoch > coalesce((SELECT w.old_epoch FROM {{schema}}.worker w WHERE w.id = :workerId), 0)
), ended AS (
  UPDATE {{schema}}.task t
     SET live_worker_id = NULL, live_epoch = NULL, lost_claims = t.lost_claims + 1,
         state_id   = CASE WHEN t.state_id = 'AE' THEN 'AW' WHEN t.state_id = 'AC' THEN 'CC' ELSE t.state_id END,
         worker_id  = CASE WHEN t.state_id = 'AE' AND NOT coalesce(t.claim_pinned, false) THEN NULL ELSE t.worker_id END,
         end_reason = CASE WHEN t.state_id = 'AC' THEN 'cancelled' ELSE t.end_reason END,
         error      = CASE WHEN t.state_id = 'AC' THEN 'Cancelled' ELSE t.error END,
         finished   = CASE WHEN t.state_id = 'AC' THEN now() ELSE t.finished END
    FROM orphan o
   WHERE t.id = o.id AND t.live_worker_id = :workerId AND t.live_epoch <= :epoch
  RETURNING t.id, t.attempt, t.node_name, t.started, o.live_epoch
)
INSERT INTO {{schema}}.task_run (task_id, attempt, worker_id, lease_epoch, node_name, started, finished, end_reason, error)
SELECT e.id, e.attempt, :workerId, e.live_epoch, e.node_name, coalesce(e.started, now()), now(), 'lost_claim',
       'Lost claim: the claim committed but its reply never reached the node, so no process started (not an attempt)'
  FROM ended e
ON CONFLICT (task_id, attempt) DO NOTHING;

-- name: releaseLease
UPDATE {{schema}}.worker
   SET active = false, locked_until = now(), task_count = 0, lock_pid = NULL,
       stop = CASE WHEN :clearStop::boolean THEN 0 ELSE stop END
 WHERE id = :workerId AND lease_epoch = :epoch;

-- name: readWorker
SELECT * FROM {{schema}}.worker WHERE id = :workerId;

-- name: listWorkers
-- A standby seen within a lease (:leaseSeconds), and at least 150 s, is waiting: a waiting
-- standby marks itself once a minute (STANDBY_MARK_MS).
SELECT id, group_id, node_name, host, pid, task_count, max_task_count, stop, active, locked_until, lease_epoch, lease_taken,
       CASE WHEN standby_seen > now() - make_interval(secs => greatest(:leaseSeconds::float8, 150)) THEN standby_node END AS standby,
       -- a term taken over before its lease ended: when its tasks are recovered
       CASE WHEN old_epoch IS NOT NULL THEN old_until + make_interval(secs => :recoveryDelaySeconds) END AS recovers_at,
       CASE
         WHEN NOT active AND standby_seen > now() - make_interval(secs => greatest(:leaseSeconds::float8, 150)) THEN 'standby'
         WHEN NOT active THEN 'stopped'
         WHEN locked_until + make_interval(secs => :recoveryDelaySeconds) <= now() THEN 'failed'
         WHEN locked_until <= now() THEN 'late'
         WHEN stop = 1 THEN 'paused'
         WHEN stop = 2 THEN 'draining'
         WHEN stop = 3 THEN 'cancelling'
         ELSE 'ok'
       END AS status
  FROM {{schema}}.worker
 ORDER BY id;

-- name: setWorkerStop
UPDATE {{schema}}.worker SET stop = :stop WHERE id = :workerId
RETURNING *;

-- name: lockRecoverable
-- A worker that may need recovering, locked; nothing if another node is at it (SKIP LOCKED).
-- lapsed: active, its lease lapsed past the recovery delay (not this node's own worker: that
-- one this node takes back through its lease). lapse_in_ms, old_in_ms: until that, and until
-- its old terms' recovery, in database time (see watchWorker).
SELECT id, node_name, lease_epoch,
       (active AND id <> :selfId AND locked_until + make_interval(secs => :recoveryDelaySeconds) <= coalesce(:now::timestamptz, now())) AS lapsed,
       CASE WHEN active AND id <> :selfId
         THEN (extract(epoch FROM locked_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 END AS lapse_in_ms,
       CASE WHEN old_epoch IS NOT NULL
         THEN (extract(epoch FROM old_until + make_interval(secs => :recoveryDelaySeconds) - coalesce(:now::timestamptz, now())) * 1000)::float8 END AS old_in_ms
  FROM {{schema}}.worker
 WHERE id = :workerId AND ((active AND id <> :selfId) OR old_epoch IS NOT NULL)
   FOR UPDATE SKIP LOCKED;

-- name: endLapsedTerm
-- A failed worker nobody took over: it is no longer active, the new term (epoch + 1) fences
-- off the node that held it should it come back, and its runs join the old terms to recover.
UPDATE {{schema}}.worker
   SET active = false, task_count = 0, lease_epoch = lease_epoch + 1, lock_pid = NULL,
       old_epoch = lease_epoch, old_until = greatest(old_until, locked_until)
 WHERE id = :workerId;

-- name: dueOldTerms
-- The worker's old terms, if their recovery is due (in the transaction that locked the row).
SELECT old_epoch FROM {{schema}}.worker
 WHERE id = :workerId AND old_epoch IS NOT NULL
   AND old_until + make_interval(secs => :recoveryDelaySeconds) <= coalesce(:now::timestamptz, now());

-- name: clearOldTerms
UPDATE {{schema}}.worker SET old_epoch = NULL, old_until = NULL WHERE id = :workerId;

-- name: watchWorkers
-- What a renewal's watch says (see renewLease), read on its own: for every worker when a term
-- begins (the first renewal is half a lease away), or for worker :workerId after a notification
-- about it. lapse and old are null when that will not be needed.
SELECT f.id,
       CASE WHEN f.active AND f.id <> :selfId
            THEN (extract(epoch FROM f.locked_until + make_interval(secs => :recoveryDelaySeconds) - now()) * 1000)::float8 END AS lapse,
       CASE WHEN f.old_epoch IS NOT NULL
            THEN (extract(epoch FROM f.old_until + make_interval(secs => :recoveryDelaySeconds) - now()) * 1000)::float8 END AS old
  FROM {{schema}}.worker f
 WHERE ((f.active AND f.id <> :selfId) OR f.old_epoch IS NOT NULL)
   AND (:workerId::int IS NULL OR f.id = :workerId);

-- name: setLockPid
-- The holder got (or lost) the worker's lock after taking its term.
UPDATE {{schema}}.worker SET lock_pid = :lockPid WHERE id = :workerId AND lease_epoch = :epoch AND active;

-- name: lockSession
-- The holder's advisory lock on its worker, held by its lock session until that ends.
SELECT pg_advisory_lock({{schema}}.worker_lock_class(), :workerId);

-- name: lockSessionStart
-- The lock session's backend, and its settings: no statement, lock or idle timeout of the
-- role or database may end it (a holder's session that ends looks like a death to its
-- standby; a standby's wait may last for days). Server-side keepalives notice a holder whose
-- host vanished without closing its connection, and a connection check notices a standby
-- that let go of its wait by reconnecting. Settings this server does not have are skipped.
SELECT pg_backend_pid() AS pid,
       (SELECT count(set_config(s.name, v.value, false))
          FROM (VALUES ('statement_timeout', '0'), ('lock_timeout', '0'), ('idle_session_timeout', '0'),
                       ('idle_in_transaction_session_timeout', '0'), ('tcp_keepalives_idle', '10'),
                       ('tcp_keepalives_interval', '2'), ('tcp_keepalives_count', '3'),
                       ('client_connection_check_interval', '1000')) AS v(name, value)
          JOIN pg_settings s ON s.name = v.name)::int AS settings;

-- name: unlockSession
SELECT pg_advisory_unlock({{schema}}.worker_lock_class(), :workerId);

-- name: awaitLockRelease
-- A standby's wait: granted as soon as no holder holds the worker's lock (a shared request
-- is queued behind a holder's exclusive one), then let go at once.
SELECT pg_advisory_lock_shared({{schema}}.worker_lock_class(), :workerId);

-- name: releaseShared
SELECT pg_advisory_unlock_shared({{schema}}.worker_lock_class(), :workerId);

-- name: markStandby
UPDATE {{schema}}.worker SET standby_node = :nodeName, standby_seen = now() WHERE id = :workerId;

-- name: standbySeen
-- A waiting standby's one statement a minute (LeaseKeeper): it says it is still there
-- (pg-tasks workers) and reads, in database time, when the holder's lease becomes
-- recoverable, in case the notifications that otherwise tell it (the holder's renewal pings,
-- a change of the row) were missed. Null: no holder (not active): take the lease now.
UPDATE {{schema}}.worker SET standby_node = :nodeName, standby_seen = now()
 WHERE id = :workerId
RETURNING CASE WHEN active
               THEN (extract(epoch FROM locked_until + make_interval(secs => :recoveryDelaySeconds) - now()) * 1000)::float8
          END AS recoverable_in_ms;

-- name: serverIdentity
-- Which cluster this server is (system_identifier, fixed at initdb and shared by its physical
-- replicas) and its timeline, read by the split-brain guard once per new connection
-- (src/db/server-guard.ts). pg_control_checkpoint() gives the timeline of the last
-- checkpoint, which lags a promotion until the checkpoint that follows it completes; a
-- primary's WAL file name gives the timeline it writes on now, so the higher of the two.
-- Both functions are executable by PUBLIC in PostgreSQL 15 (no grant needed).
SELECT s.system_identifier::text AS system_id,
       greatest(c.timeline_id,
                CASE WHEN pg_is_in_recovery() THEN 0
                     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END) AS timeline
  FROM pg_control_system() s, pg_control_checkpoint() c;

-- name: backendPid
-- The backend serving this statement: at start, tells a session from a transaction pooler.
SELECT pg_backend_pid() AS pid;
