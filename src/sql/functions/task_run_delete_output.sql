-- SECURITY DEFINER: it writes rows the writer of the row that fired it may not (see the
-- note in src/sql/roles.sql); its search_path is fixed, pg_temp last.
-- Deleting runs (retention's keep_runs) deletes their output.
CREATE OR REPLACE FUNCTION {{schema}}.task_run_delete_output()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$
BEGIN
  DELETE FROM task_output o USING old_rows r WHERE o.task_id = r.task_id AND o.attempt = r.attempt;
  RETURN NULL;
END;
$function$;

DROP TRIGGER IF EXISTS task_run_delete_output ON {{schema}}.task_run;
CREATE TRIGGER task_run_delete_output AFTER DELETE ON {{schema}}.task_run REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {{schema}}.task_run_delete_output();
