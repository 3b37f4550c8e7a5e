-- Deleting tasks deletes their runs (task_delete_runs) and their output, a live run's too.
CREATE OR REPLACE FUNCTION {{schema}}.task_delete_runs()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
BEGIN
  DELETE FROM task_run r WHERE r.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  DELETE FROM task_output o WHERE o.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_delete_runs ON {{schema}}.task;
CREATE TRIGGER task_delete_runs AFTER DELETE ON {{schema}}.task REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_delete_runs();
