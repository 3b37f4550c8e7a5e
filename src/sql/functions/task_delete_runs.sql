-- SECURITY DEFINER: it writes rows the writer of the row that fired it may not (see the
-- note in src/sql/roles.sql); its search_path is fixed, pg_temp last.
-- Deleting tasks deletes their runs (task_delete_runs) and their output, a live run's too.
CREATE OR REPLACE FUNCTION {{schema}}.task_delete_runs()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  DELETE FROM task_run r WHERE r.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  DELETE FROM task_output o WHERE o.task_id = ANY (ARRAY(SELECT id FROM old_rows));
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_delete_runs ON {{schema}}.task;
CREATE TRIGGER task_delete_runs AFTER DELETE ON {{schema}}.task REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_delete_runs();
