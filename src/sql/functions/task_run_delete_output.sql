-- Deleting runs (retention's keep_runs) deletes their output.
CREATE OR REPLACE FUNCTION {{schema}}.task_run_delete_output()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO {{schema}}, pg_catalog
AS $function$
BEGIN
  DELETE FROM task_output o USING old_rows r WHERE o.task_id = r.task_id AND o.attempt = r.attempt;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_run_delete_output ON {{schema}}.task_run;
CREATE TRIGGER task_run_delete_output AFTER DELETE ON {{schema}}.task_run REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_run_delete_output();
