-- Whether the role writing now is pg-tasks itself: one that may record runs (INSERT on
-- task_run: the node role, an admin, the tables' owner). The settings that let pg-tasks' own
-- writes past the write-time checks (pg_tasks.advancing, set by the scheduler; pg_tasks.recovering,
-- by a recovery) count only for such a writer: anyone may set a custom setting, so a submitter
-- that sets one gains nothing. Callers read the setting first, so a write without it pays no call.
CREATE OR REPLACE FUNCTION {{schema}}.node_writer()
 RETURNS boolean
 LANGUAGE sql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$ SELECT has_table_privilege('task_run', 'INSERT') $function$;
