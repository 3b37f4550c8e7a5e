-- A live run is counted under its task's group and key: they can't change until it has ended.
CREATE OR REPLACE FUNCTION {{schema}}.task_limit_rules()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  RAISE EXCEPTION 'can''t change the group_id or concurrency_key of task % while a process of it may run (attempt % on worker %)',
    OLD.id, OLD.attempt, OLD.live_worker_id USING ERRCODE = 'check_violation';
END;
$function$;

DROP TRIGGER IF EXISTS task_limit_rules ON {{schema}}.task;
CREATE TRIGGER task_limit_rules BEFORE UPDATE ON {{schema}}.task FOR EACH ROW WHEN (((old.live_worker_id IS NOT NULL) AND ((old.group_id IS DISTINCT FROM new.group_id) OR (old.concurrency_key IS DISTINCT FROM new.concurrency_key)))) EXECUTE FUNCTION {{schema}}.task_limit_rules();
