-- The recover policy for a failed worker: called once per recovered term range, by the node
-- that takes over a worker whose lease lapsed while it was active. It is the user's to
-- replace (docs/failover.md): the migrator applies this file only while the functions in the
-- schema are absent or the ones pg-tasks itself installed, never over a user's own.
--
-- recover_worker_tasks(worker, epoch): the tasks worker p_worker_id was running under its
-- terms up to p_epoch (a task's lease_epoch is the term that claimed it). A newer term of the
-- same worker may be running tasks meanwhile: they are not touched. A task being cancelled
-- ends CC; an executing one ends CF with end_reason 'worker_failed', and is queued again if
-- its recover_policy (its own, else its group's) is 'requeue', or if it retries on
-- worker_failed with attempts left (after its backoff).
-- recover_worker_tasks(worker): the one-argument form of earlier versions, every term.
CREATE OR REPLACE FUNCTION {{schema}}.recover_worker_tasks(p_worker_id integer)
 RETURNS void
 LANGUAGE sql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
        -- Every task of the worker, whatever its term (see the two-argument policy).
        SELECT recover_worker_tasks(p_worker_id, 9223372036854775807);
      $function$;

CREATE OR REPLACE FUNCTION {{schema}}.recover_worker_tasks(p_worker_id integer, p_epoch bigint)
 RETURNS void
 LANGUAGE sql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
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
$function$;
