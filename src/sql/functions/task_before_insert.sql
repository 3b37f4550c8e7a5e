-- Rules of the lifecycle (docs/lifecycle.md), enforced for every writer.
CREATE OR REPLACE FUNCTION {{schema}}.task_before_insert()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  IF NEW.state_id NOT IN ('DR', 'AW') THEN
    RAISE EXCEPTION 'a task can only be inserted in state DR or AW, not %', NEW.state_id
      USING ERRCODE = 'check_violation';
  END IF;
  NEW.created := now();
  NEW.last_state_change := now();
  RETURN NEW;
END;
$function$;

DROP TRIGGER IF EXISTS task_before_insert ON {{schema}}.task;
CREATE TRIGGER task_before_insert BEFORE INSERT ON {{schema}}.task FOR EACH ROW EXECUTE FUNCTION {{schema}}.task_before_insert();
