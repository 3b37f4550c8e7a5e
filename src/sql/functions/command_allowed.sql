-- The two halves, for SQL users and the claim.
CREATE OR REPLACE FUNCTION {{schema}}.command_allowed(p_group integer, p_command text[], p_task_id bigint DEFAULT NULL::bigint)
 RETURNS text
 LANGUAGE sql
 STABLE
 SET search_path TO {{schema}}, pg_catalog, pg_temp
AS $function$ SELECT (command_check(p_group, p_command, p_task_id)).program $function$;
