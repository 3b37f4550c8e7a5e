-- Version 15: failover in a second, not a lease (issue 14; docs/failover.md).
--
-- The holder of a worker's lease also holds a session advisory lock on it, (worker_lock_class(),
-- worker id), on a connection of its own. PostgreSQL releases that lock the moment the
-- holder's session ends — the node died, or its connection was cut — and a standby waiting
-- for it wakes at once and takes the next term. The lock is only a wake-up and a witness:
-- nothing about who may run what depends on it (see the argument in docs/failover.md).
--
-- A term taken over before its lease ended leaves its live runs behind: the node that ran
-- them may still be alive, cut off, trusting its lease until its fence (renewal + lease −
-- margin, before locked_until). So they are recovered only once that term's locked_until +
-- the recovery delay has passed, while the new term already claims new work.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE worker
  -- The backend pid of the session in which the holder holds the worker's advisory lock;
  -- null while the holder runs its term without it (it is waiting for the lock).
  ADD COLUMN lock_pid int,
  -- Terms that ended without their runs being recovered yet: live runs of this worker with
  -- live_epoch <= old_epoch are recovered once old_until (the latest locked_until of those
  -- terms) + the recovery delay has passed, never sooner.
  ADD COLUMN old_epoch bigint,
  ADD COLUMN old_until timestamptz;

-- The first key of the workers' advisory locks: this installation's own, as another schema in
-- the database has its own task table (the same scheme as the limits' lock class).
CREATE FUNCTION worker_lock_class() RETURNS int
LANGUAGE sql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$ SELECT hashtext('pg-tasks worker ' || 'task'::regclass::oid::text) $$;

-- Whether backend p_pid holds worker p_worker's lock now. pg_locks is read live from the lock
-- manager: a session that ended has released its locks before it leaves pg_stat_activity.
CREATE FUNCTION worker_lock_held(p_worker int, p_pid int) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = {{schema}}, pg_catalog
AS $$
  SELECT EXISTS (SELECT 1 FROM pg_locks l
                  WHERE l.locktype = 'advisory' AND l.classid = worker_lock_class()::oid
                    AND l.objid = p_worker::oid AND l.objsubid = 2
                    AND l.pid = p_pid AND l.mode = 'ExclusiveLock' AND l.granted)
$$;

-- A take-over changes the term (lease_epoch) without changing active: the node that held it
-- is told at once, and so is every node that watches for failed workers. lock_pid changes
-- when a holder gets (or loses) the lock: a standby waits for it again.
CREATE OR REPLACE FUNCTION worker_notify_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.stop IS DISTINCT FROM OLD.stop OR NEW.active IS DISTINCT FROM OLD.active
     OR NEW.lease_epoch IS DISTINCT FROM OLD.lease_epoch OR NEW.lock_pid IS DISTINCT FROM OLD.lock_pid THEN
    PERFORM pg_notify(TG_TABLE_SCHEMA, json_build_object('e', 'worker', 'w', NEW.id)::text);
  END IF;
  RETURN NULL;
END;
$$;

-- The recover policy now names the terms it recovers: the tasks worker p_worker_id was running
-- under its terms up to p_epoch (a task's lease_epoch is the term that claimed it). A newer
-- term of the same worker may be running tasks meanwhile: they are not touched. The shipped
-- policy, as in version 5: a task being cancelled ends CC; an executing one ends CF with
-- end_reason 'worker_failed', and is queued again if its recover_policy (its own, else its
-- group's) is 'requeue', or if it retries on worker_failed with attempts left (after its
-- backoff).
CREATE FUNCTION recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
LANGUAGE sql
SET search_path = {{schema}}, pg_catalog
AS $$
  UPDATE task
     SET state_id = 'CC', finished = now(), end_reason = 'cancelled', error = 'Cancelled (its worker failed)'
   WHERE worker_id = p_worker_id AND coalesce(lease_epoch, 0) <= p_epoch AND state_id = 'AC';
  UPDATE task
     SET state_id = 'CF', finished = now(), end_reason = 'worker_failed', error = 'Worker failed'
   WHERE worker_id = p_worker_id AND coalesce(lease_epoch, 0) <= p_epoch AND state_id = 'AE';
  -- Queued again: by the recover policy at once, else as a retry after its backoff.
  UPDATE task t
     SET state_id = 'AW', worker_id = NULL,
         run_after = CASE WHEN coalesce(t.recover_policy,
                                        (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                                        'fail') = 'requeue'
                          THEN NULL ELSE now() + retry_delay(t, 'worker_failed') END
   WHERE t.worker_id = p_worker_id AND coalesce(t.lease_epoch, 0) <= p_epoch
     AND t.state_id = 'CF' AND t.end_reason = 'worker_failed' AND t.finished = now()
     AND (coalesce(t.recover_policy,
                   (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                   'fail') = 'requeue'
          OR retry_delay(t, 'worker_failed') IS NOT NULL);
$$;

-- The one-argument policy of earlier versions. The shipped one becomes the new policy applied
-- to every term. One a user wrote is kept, and the new policy calls it:
-- it then acts on every task of the worker, which is right only when no newer term runs any,
-- so the migration says to port it.
DO $migration$
DECLARE
  current_body text := (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('recover_worker_tasks(int)'));
  version5_body text := $v5$
        UPDATE task
           SET state_id = 'CC', finished = now(), end_reason = 'cancelled', error = 'Cancelled (its worker failed)'
         WHERE worker_id = p_worker_id AND state_id = 'AC';
        UPDATE task
           SET state_id = 'CF', finished = now(), end_reason = 'worker_failed', error = 'Worker failed'
         WHERE worker_id = p_worker_id AND state_id = 'AE';
        -- Queued again: by the recover policy at once, else as a retry after its backoff.
        UPDATE task t
           SET state_id = 'AW', worker_id = NULL,
               run_after = CASE WHEN coalesce(t.recover_policy,
                                              (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                                              'fail') = 'requeue'
                                THEN NULL ELSE now() + retry_delay(t, 'worker_failed') END
         WHERE t.worker_id = p_worker_id AND t.state_id = 'CF' AND t.end_reason = 'worker_failed'
           AND t.finished = now()
           AND (coalesce(t.recover_policy,
                         (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                         'fail') = 'requeue'
                OR retry_delay(t, 'worker_failed') IS NOT NULL);
      $v5$;
BEGIN
  IF current_body IS NULL
     OR btrim(regexp_replace(current_body, '\s+', ' ', 'g')) = btrim(regexp_replace(version5_body, '\s+', ' ', 'g')) THEN
    EXECUTE format($function$
      CREATE OR REPLACE FUNCTION %I.recover_worker_tasks(p_worker_id int) RETURNS void
      LANGUAGE sql
      SET search_path = %I, pg_catalog
      AS $body$
        -- Every task of the worker, whatever its term (see the two-argument policy).
        SELECT recover_worker_tasks(p_worker_id, 9223372036854775807);
      $body$
    $function$, current_schema(), current_schema());
  ELSE
    EXECUTE format($function$
      CREATE OR REPLACE FUNCTION %I.recover_worker_tasks(p_worker_id int, p_epoch bigint) RETURNS void
      LANGUAGE sql
      SET search_path = %I, pg_catalog
      AS $body$
        -- Your own policy, written for version 14 and earlier: it acts on all the worker's
        -- tasks. Port it to this form, acting on live_epoch <= p_epoch only.
        SELECT recover_worker_tasks(p_worker_id);
      $body$
    $function$, current_schema(), current_schema());
    RAISE WARNING 'pg-tasks: recover_worker_tasks(int) is your own policy; it is still called, but now also while a new term of the worker runs tasks: port it to recover_worker_tasks(int, bigint) (see docs/failover.md)';
  END IF;
END;
$migration$;
