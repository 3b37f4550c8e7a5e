-- Version 3: failover. What happens to the tasks of a failed worker, chosen per task or per
-- group without writing SQL: 'fail' (the default: CF, 'Worker failed') or 'requeue' (CF, then
-- AW again, for any worker of the group). And standby nodes made visible.

SET LOCAL search_path TO {{schema}}, pg_catalog;

ALTER TABLE task
  ADD COLUMN recover_policy text
      CONSTRAINT task_recover_policy_valid CHECK (recover_policy IN ('fail', 'requeue'));

-- A standby node stamps the worker it waits for at each attempt to take it over.
ALTER TABLE worker
  ADD COLUMN standby_node text,
  ADD COLUMN standby_seen timestamptz;

-- Settings of a group of nodes. A task's own recover_policy wins over its group's.
CREATE TABLE task_group (
  id             int  PRIMARY KEY,
  recover_policy text NOT NULL DEFAULT 'fail'
                 CONSTRAINT task_group_recover_policy_valid CHECK (recover_policy IN ('fail', 'requeue'))
);

-- The new default policy replaces the old default only: a recover_worker_tasks that a user
-- wrote is left as it is. The bodies are compared with their whitespace folded.
DO $migration$
DECLARE
  current_body text := (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure('recover_worker_tasks(int)'));
  version1_body text := 'UPDATE task SET state_id = ''CF'', error = ''Worker failed'', finished = now() WHERE worker_id = p_worker_id AND state_id IN (''AE'', ''AC'');';
BEGIN
  IF current_body IS NULL OR btrim(regexp_replace(current_body, '\s+', ' ', 'g')) = version1_body THEN
    EXECUTE format($function$
      CREATE OR REPLACE FUNCTION %I.recover_worker_tasks(p_worker_id int) RETURNS void
      LANGUAGE sql
      SET search_path = %I, pg_catalog
      AS $body$
        -- Every task the failed worker was running failed with it; the process is gone.
        -- Those whose policy is 'requeue' (their own, else their group's) are queued again.
        UPDATE task t
           SET state_id = 'CF', finished = now(),
               error = CASE WHEN t.state_id = 'AE'
                             AND coalesce(t.recover_policy,
                                          (SELECT g.recover_policy FROM task_group g WHERE g.id = t.group_id),
                                          'fail') = 'requeue'
                            THEN 'Worker failed; re-queued' ELSE 'Worker failed' END
         WHERE t.worker_id = p_worker_id AND t.state_id IN ('AE', 'AC');
        UPDATE task
           SET state_id = 'AW', worker_id = NULL
         WHERE worker_id = p_worker_id AND state_id = 'CF' AND error = 'Worker failed; re-queued'
           AND finished = now();
      $body$
    $function$, current_schema(), current_schema());
  END IF;
END;
$migration$;
